"""The KPI write-back on Trello and Asana, against the emulated GA4 property, Trello and Asana over real HTTP (real
clients), on SQLite and PostgreSQL: a card linked through its KPI custom field and a task linked through the KPI
line of its (French) story get the result as a comment in their source's language, once; a second run writes
nothing; a status change writes one new comment; and a comment posted by a worker that died before recording it
is not posted again."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from connectors.base import RetryPolicy
from connectors.ga4 import GA4Connector
from sandbox.asana import DEFAULT_TOKEN as ASANA_TOKEN
from sandbox.asana import AsanaWorkspace
from sandbox.asana import create_app as create_asana
from sandbox.asana_data import FR_PROJECT
from sandbox.common import ThreadedServer
from sandbox.ga4 import GA4Property
from sandbox.ga4 import create_app as create_ga4
from sandbox.trello import DEFAULT_KEY, DEFAULT_TOKEN, TrelloSite
from sandbox.trello import create_app as create_trello
from service.config import AppConfig
from service.db import session_scope
from service.kpi.job import KpiJob
from service.outbox import OutboxWorker, claim
from service.registry import tool_for
from service.sync import SyncService
from service.tables import ItemRow, OutboxRow

TODAY = date(2026, 12, 1)
EMAIL_LEADS = {"eventName": "generate_lead", "sessionDefaultChannelGroup": "Email"}
NEWSLETTER_CARD = "Newsletter sign-up form in the blog sidebar"  # seeded with KPI "email-leads"
SUMMER_TASK = "Campagne soldes d'été"  # a French task; the test links its story to "email-leads"


@dataclass
class World:
    ga4: GA4Property
    ga4_url: str
    trello: TrelloSite
    trello_url: str
    asana: AsanaWorkspace
    asana_url: str
    engine: Engine

    @property
    def card_id(self) -> str:
        return next(card.id for card in self.trello.cards.values() if card.name == NEWSLETTER_CARD)

    @property
    def task_gid(self) -> str:
        return next(task.gid for task in self.asana.tasks.values() if task.name == SUMMER_TASK)

    def config(self, *, trello_language: str = "en") -> AppConfig:
        board = self.trello.board_named("Marketing backlog")
        return AppConfig.model_validate({
            "sources": [
                {"name": "boards", "kind": "trello", "base_url": self.trello_url, "boards": [board.short_link],
                 "api_key": {"env": "KPI_TRELLO_KEY"}, "token": {"env": "KPI_TRELLO_TOKEN"},
                 "language": trello_language, "write_back": {"kpi_comments": True}},
                {"name": "taches", "kind": "asana", "base_url": self.asana_url, "projects": [FR_PROJECT],
                 "token": {"env": "KPI_ASANA_TOKEN"}, "plan": "paid", "language": "fr",
                 "write_back": {"kpi_comments": True}},
            ],
            "ga4": {"property_id": "123456789", "endpoint": self.ga4_url, "anonymous": True},
            "objectives": [{
                "key": "email-leads", "name": "Email lead generation +40% YoY", "owner": "mops@acme.example",
                "metric": "eventCount", "dimension_filter": EMAIL_LEADS, "baseline": "previous_year",
                "target": "+40%", "start": "2026-01-01", "end": "2026-12-31", "milestones": "quarterly",
            }],
        })

    def job(self, config: AppConfig) -> KpiJob:
        return KpiJob(engine=self.engine, config=config, connector_factory=lambda ga4: GA4Connector(
            property_id="123456789", endpoint=ga4.endpoint, anonymous=True,
            policy=RetryPolicy(max_attempts=1, base_delay=0.01)))

    def sync_and_drain(self, config: AppConfig) -> SyncService:
        sync = SyncService(engine=self.engine, config=config, policy=RetryPolicy(max_attempts=3, base_delay=0.01))
        for name in ("boards", "taches"):
            assert sync.run(name, mode="full").status == "succeeded"
        drained = OutboxWorker(engine=self.engine, sync_service=sync).drain()
        assert drained.failed == 0, drained.errors
        return sync

    def card_comments(self) -> list[str]:
        return [c["text"] for c in self.trello.comments if c["card"] == self.card_id]

    def task_comments(self) -> list[str]:
        return [s["text"] for s in self.asana.tasks[self.task_gid].stories if s["resource_subtype"] == "comment_added"]


@pytest.fixture
def world(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("KPI_TRELLO_KEY", DEFAULT_KEY)
    monkeypatch.setenv("KPI_TRELLO_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("KPI_ASANA_TOKEN", ASANA_TOKEN)
    ga4 = GA4Property(today=TODAY)
    ga4_server = ThreadedServer(create_ga4(ga4)).start()
    site = TrelloSite()
    trello_server = ThreadedServer(create_trello(site)).start()
    workspace = AsanaWorkspace()
    asana_server = ThreadedServer(create_asana(workspace))
    workspace.base_url = asana_server.url
    asana_server.start()
    world = World(ga4=ga4, ga4_url=ga4_server.url, trello=site, trello_url=trello_server.url, asana=workspace,
                  asana_url=asana_server.url, engine=engine)
    # A user links the French task to the objective through the KPI line of its story.
    task = workspace.tasks[world.task_gid]
    notes = "\n".join("Indicateur clé de performance (KPI) : email-leads" if line.startswith("Indicateur clé")
                      else line for line in task.notes.splitlines())
    assert notes != task.notes
    workspace.set_field(task.gid, "notes", notes, notify=False)
    yield world
    asana_server.stop()
    trello_server.stop()
    ga4_server.stop()


def linked(engine: Engine) -> dict[str, str]:
    """source -> external id of each item whose KPI story field names the objective."""
    with session_scope(engine) as db:
        return {source: external_id for source, external_id, story in
                db.execute(select(ItemRow.source, ItemRow.external_id, ItemRow.story))
                if (story or {}).get("kpi") == "email-leads"}


@pytest.mark.parametrize("trello_language", ["en", "fr"])
def test_a_card_and_a_task_get_the_result_once_in_their_language(world: World, trello_language: str) -> None:
    config = world.config(trello_language=trello_language)
    sync = world.sync_and_drain(config)
    assert linked(world.engine) == {"boards": world.card_id, "taches": world.task_gid}
    assert world.card_comments() == [] and world.task_comments() == []

    job = world.job(config)
    result = job.run(today=TODAY)
    assert result.status == "succeeded", result
    assert result.writes_planned == 2  # one comment per linked item; neither source owns a KPI text field
    drained = OutboxWorker(engine=world.engine, sync_service=sync).drain()
    assert (drained.sent, drained.failed) == (2, 0), drained.errors
    (card_comment,) = world.card_comments()
    (task_comment,) = world.task_comments()
    if trello_language == "en":
        assert card_comment.startswith('KPI "Email lead generation +40% YoY" (email-leads), as of 2026-11-30:')
        assert "Milestone Q4" in card_comment and "on track" in card_comment
    else:
        assert card_comment.startswith("KPI « Email lead generation +40% YoY » (email-leads), au 2026-11-30 :")
        assert "Jalon T4" in card_comment and "en bonne voie" in card_comment
    assert task_comment.startswith("KPI « Email lead generation +40% YoY » (email-leads), au 2026-11-30 :")
    assert "Jalon T4" in task_comment and "(écrit par backlog-sync)" in task_comment

    # Nothing changed: neither the next syncs nor the next KPI run write anything.
    for name in ("boards", "taches"):
        assert sync.run(name, mode="incremental").writes_planned == 0
    assert job.run(today=TODAY).writes_planned == 0
    assert OutboxWorker(engine=world.engine, sync_service=sync).drain().sent == 0
    assert len(world.card_comments()) == 1 and len(world.task_comments()) == 1


def test_a_status_change_writes_one_new_comment(world: World) -> None:
    config = world.config()
    sync = world.sync_and_drain(config)
    job = world.job(config)
    job.run(today=TODAY)
    OutboxWorker(engine=world.engine, sync_service=sync).drain()
    assert "on track" in world.card_comments()[-1] and "en bonne voie" in world.task_comments()[-1]

    # GA4 revises November down to a third: Q4 to date falls far below what +40% expects (off track).
    for offset in range(30):
        day = date(2026, 11, 1) + timedelta(days=offset)
        world.ga4.set_value(day, EMAIL_LEADS, "eventCount", world.ga4.value(day, EMAIL_LEADS, "eventCount") // 3)
    assert job.reread_from(date(2026, 11, 1)) == 1  # older than the lookback: the operator asks for it again
    result = job.run(today=TODAY)
    assert result.writes_planned == 2
    assert OutboxWorker(engine=world.engine, sync_service=sync).drain().sent == 2
    assert len(world.card_comments()) == 2 and len(world.task_comments()) == 2
    assert "Milestone Q4" in world.card_comments()[-1] and "off track" in world.card_comments()[-1]
    assert "Jalon T4" in world.task_comments()[-1] and "en retard" in world.task_comments()[-1]
    assert job.run(today=TODAY).writes_planned == 0  # and only once


@pytest.mark.parametrize("source", ["boards", "taches"])
def test_a_comment_posted_by_a_worker_that_died_is_not_posted_again(world: World, source: str) -> None:
    config = world.config()
    sync = world.sync_and_drain(config)
    world.job(config).run(today=TODAY)
    comments = world.card_comments if source == "boards" else world.task_comments
    other = world.task_comments if source == "boards" else world.card_comments
    # A worker claims the KPI comments, posts this source's one and dies before recording that it did.
    rows = claim(world.engine, limit=100, claim_seconds=60)
    comment = next(row for row in rows if row.field == "comment" and row.source == source)
    kind = config.source(source).kind
    sync.connector(source).add_comment(comment.external_id, tool_for(kind).mapping.comment_body(
        str(comment.value), context=sync.context(source)))
    assert comments() == [comment.value]
    with session_scope(world.engine) as db:  # its claims lapse
        db.execute(update(OutboxRow).where(OutboxRow.status == "sending")
                   .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))

    drained = OutboxWorker(engine=world.engine, sync_service=sync).drain()
    assert drained.failed == 0, drained.errors
    assert comments() == [comment.value]  # read back from the tool: not posted a second time
    assert len(other()) == 1  # the other source's comment, never posted before, is posted once
    with session_scope(world.engine) as db:
        row = db.get(OutboxRow, comment.id)
        assert row.status == "sent" and (row.last_error or "").startswith("recovered:")
