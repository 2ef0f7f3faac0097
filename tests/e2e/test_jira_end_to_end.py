"""End to end on Jira: the demo, and a user's edit in Jira reaching the daemon as a signed webhook and coming
back as a new score, with no write loop from the webhooks our own writes cause."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console
from sqlalchemy import func, select

from sandbox.common import ThreadedServer, free_port
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite
from sandbox.jira import create_app as create_jira
from service.api import create_app
from service.config import AppConfig, Settings
from service.db import make_engine, session_scope
from service.demo import run_demo
from service.outbox import OutboxWorker
from service.tables import ItemRow, OutboxRow
from tests.e2e.replicas import wait_for

SCORE = "customfield_10070"
RANK = "customfield_10071"


def test_demo_syncs_every_tool_scores_writes_back_and_computes_the_objectives(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DEMO_JIRA_TOKEN", "DEMO_JIRA_WEBHOOK_SECRET", "DEMO_TRELLO_KEY", "DEMO_TRELLO_TOKEN",
                 "DEMO_TRELLO_SECRET", "DEMO_ASANA_TOKEN", "DATABASE_URL", "ADMIN_TOKEN", "LOG_FORMAT"):
        monkeypatch.setenv(name, "restored-after-the-test")
    console = Console(record=True, width=200)
    code = run_demo(port=free_port(), workdir=tmp_path / ".demo", keep_running=False, console=console)
    output = console.export_text()
    assert code == 0, output
    assert "full sync of marketing-jira: 42 items" in output
    assert "full sync of marketing-trello: 22 items" in output and "full sync of marketing-asana: 24 items" in output
    assert "Ranked marketing backlog" in output and "MKT-13" in output
    assert "KPI objectives" in output and "email-leads" in output and "organic-sessions" in output

    engine = make_engine(f"sqlite:///{tmp_path / '.demo' / 'backlog-sync.db'}")
    with session_scope(engine) as db:
        everything = list(db.execute(select(ItemRow)).scalars())
        pending = db.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.status != "sent"))
        comments = db.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.field == "comment",
                                                                             OutboxRow.status == "sent"))
    engine.dispose()
    by_source: dict[str, list[ItemRow]] = {}
    for row in everything:
        by_source.setdefault(row.source, []).append(row)
    assert {name: len(rows) for name, rows in by_source.items()} == {
        "marketing-jira": 42, "marketing-trello": 22, "marketing-asana": 24}
    for rows in by_source.values():  # dense ranks per source, done and cancelled items unranked
        open_ranks = sorted(r.rank for r in rows if r.rank is not None)
        assert open_ranks == list(range(1, len(open_ranks) + 1))
        assert all(r.rank is None for r in rows if r.status in ("done", "cancelled"))
    assert pending == 0  # every planned score, rank and KPI write was sent
    assert comments and comments > 0  # linked items got their KPI result
    rows = {row.key: row for row in by_source["marketing-jira"]}
    # The seed's own French story is parsed, and an unreadable input is reported rather than guessed.
    assert rows["MKT-1"].story["role"] == "responsable SEO" and rows["MKT-1"].story["language"] == "fr"
    assert rows["MKT-1"].item_type == "technical" and rows["MKT-3"].item_type == "experiment"
    chatbot = next(r for r in rows.values() if r.title.startswith("Chatbot"))
    assert chatbot.score is None and any(p["field"] == "reach" for p in chatbot.problems)


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine) -> Iterator[tuple[JiraSite, object, str]]:
    monkeypatch.setenv("E2E_JIRA_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("E2E_JIRA_SECRET", "a-webhook-secret-for-the-test")
    site = JiraSite()
    jira = ThreadedServer(create_jira(site))
    site.base_url = jira.url
    jira.start()
    daemon_port = free_port()
    hook_url = f"http://127.0.0.1:{daemon_port}/webhooks/jira/mkt"
    config = AppConfig.model_validate({
        "webhook_debounce_seconds": 0.2,
        "sources": [{
            "name": "mkt", "kind": "jira", "base_url": jira.url, "jql": "project = MKT",
            "auth": {"email": DEFAULT_EMAIL, "token": {"env": "E2E_JIRA_TOKEN"}},
            "schedule": {"interval_seconds": 3600},
            "webhook_secret": {"env": "E2E_JIRA_SECRET"}, "webhook_url": hook_url,
        }],
    })
    settings = Settings(admin_token="an-admin-token-of-the-test-1234", database_url="sqlite://")
    app = create_app(settings=settings, config=config, engine=engine, start_scheduler=True)
    sync = app.state.sync
    assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
    OutboxWorker(engine=engine, sync_service=sync).drain()
    daemon = ThreadedServer(app, port=daemon_port).start()  # its first scheduled sync runs now, finding nothing new
    site.register_webhook(hook_url, secret="a-webhook-secret-for-the-test")
    yield site, engine, hook_url
    daemon.stop()
    jira.stop()


def test_an_edit_in_jira_comes_back_as_a_new_score_once(running) -> None:
    site, engine, _ = running
    issue = site.find("MKT-2")
    before = issue.fields[SCORE]
    assert before is not None

    site.set_field("MKT-2", "Reach", issue.fields["customfield_10050"] * 10)  # a user's edit: webhook sent
    assert wait_for(lambda: site.find("MKT-2").fields[SCORE] == pytest.approx(before * 10)), site.webhook_log

    # Our write to MKT-2 (and the rank writes it moved) came back as webhooks; none of them causes a write.
    site.wait_for_webhooks()
    time.sleep(1.0)
    edits = len(site.edits)
    site.wait_for_webhooks()
    time.sleep(1.0)
    assert len(site.edits) == edits
    with session_scope(engine) as db:
        row = db.execute(select(ItemRow).where(ItemRow.key == "MKT-2")).scalar_one()
        assert row.score == pytest.approx(before * 10)
        assert row.remote_values["score"] == pytest.approx(before * 10)


def test_a_deleted_issue_leaves_the_backlog(running) -> None:
    site, engine, _ = running
    removed_id = str(site.find("MKT-7").id)
    assert site.delete("MKT-7")

    def gone() -> bool:
        with session_scope(engine) as db:
            return db.execute(select(ItemRow).where(ItemRow.external_id == removed_id)).first() is None

    assert wait_for(gone), site.webhook_log
