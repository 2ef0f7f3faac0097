"""End to end on Trello: the daemon (service.api.create_app over HTTP) registers its webhook through Trello's API,
a user's edit in the emulated Trello arrives as a signed webhook (a French card with an emoji in its name), the new
score is written back to Trello, and the webhooks our own writes cause bring no further write."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
import requests
from sqlalchemy import func, select

from sandbox.common import ThreadedServer, free_port
from sandbox.trello import DEFAULT_KEY, DEFAULT_SECRET, DEFAULT_TOKEN, TrelloSite
from sandbox.trello import create_app as create_trello
from service.api import create_app
from service.config import AppConfig, Settings
from service.db import session_scope
from service.outbox import OutboxWorker
from service.tables import InboxRow, ItemRow
from tests.e2e.replicas import wait_for


@pytest.fixture
def running(monkeypatch: pytest.MonkeyPatch, engine) -> Iterator[dict[str, Any]]:
    monkeypatch.setenv("E2E_TRELLO_KEY", DEFAULT_KEY)
    monkeypatch.setenv("E2E_TRELLO_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("E2E_TRELLO_SECRET", DEFAULT_SECRET)
    site = TrelloSite()
    trello = ThreadedServer(create_trello(site)).start()
    daemon_port = free_port()
    hook_url = f"http://127.0.0.1:{daemon_port}/webhooks/trello/boards"
    config = AppConfig.model_validate({
        "webhook_debounce_seconds": 0.2,
        "sources": [{
            "name": "boards", "kind": "trello", "base_url": trello.url,
            "api_key": {"env": "E2E_TRELLO_KEY"}, "token": {"env": "E2E_TRELLO_TOKEN"},
            "boards": [board.short_link for board in site.boards.values()],
            "schedule": {"interval_seconds": 3600},
            "webhook_secret": {"env": "E2E_TRELLO_SECRET"}, "webhook_url": hook_url,
        }],
    })
    settings = Settings(admin_token="an-admin-token-of-the-test-1234", database_url="sqlite://")
    app = create_app(settings=settings, config=config, engine=engine, start_scheduler=True)
    sync = app.state.sync
    assert sync.run("boards", mode="full", trigger="cli").status == "succeeded"
    OutboxWorker(engine=engine, sync_service=sync).drain()
    daemon = ThreadedServer(app, port=daemon_port).start()
    # Registered through Trello's API, which first checks the callback with HEAD.
    assert len(sync.connector("boards").register_webhook(hook_url)) == 2
    yield {"site": site, "engine": engine, "hook_url": hook_url}
    daemon.stop()
    trello.stop()


def inbox_rows(engine) -> int:
    with session_scope(engine) as db:
        return db.scalar(select(func.count()).select_from(InboxRow)) or 0


def test_an_edit_in_trello_comes_back_as_a_new_score_once(running) -> None:
    site, engine = running["site"], running["engine"]
    board = site.board_named("Backlog marketing")
    card = next(c for c in board.cards.values() if "🎯" in c.name)
    before = float(site.value_of(card.id, "Marketing score"))
    reach = float(site.value_of(card.id, "Portée"))

    site.user_sets_field(card.id, "Portée", reach * 10)  # a user's edit: a signed webhook, accents and emoji
    assert wait_for(lambda: float(site.value_of(card.id, "Marketing score")) == pytest.approx(before * 10)), \
        site.webhook_log
    assert site.webhook_log[0]["status"] == 200

    # Our writes came back as updateCustomFieldItem webhooks; none of them causes a further write.
    site.wait_for_webhooks()
    time.sleep(1.0)
    edits = len(site.edits)
    site.wait_for_webhooks()
    time.sleep(1.0)
    assert len(site.edits) == edits
    assert all(entry["status"] == 200 for entry in site.webhook_log)
    with session_scope(engine) as db:
        row = db.execute(select(ItemRow).where(ItemRow.external_id == card.id)).scalar_one()
        assert row.score == pytest.approx(before * 10) and row.remote_values["score"] == pytest.approx(before * 10)
        echoes = list(db.execute(select(InboxRow.outcome).where(InboxRow.status == "done")).scalars())
    ignored = [int(m.group(1)) for outcome in echoes if (m := re.search(r"ignored (\d+) echoes", outcome or ""))]
    assert sum(ignored) >= 1, echoes


def test_bad_or_missing_signatures_get_401_and_nothing_is_stored(running) -> None:
    site, engine, url = running["site"], running["engine"], running["hook_url"]
    assert requests.head(url, timeout=5).status_code == 200
    body = ('{"action": {"id": "5f5e10000000000000000099", "type": "updateCard", "data": {"card": '
            '{"id": "5f5e10000000000000000001", "name": "Crème brûlée 🎯"}, "old": {"name": "x"}}}}').encode()
    stored = inbox_rows(engine)
    for headers in ({}, {"X-Trello-Webhook": "bm90IGEgc2lnbmF0dXJl"},
                    {"X-Trello-Webhook": site.sign(body, url + "?other")}):
        answer = requests.post(url, data=body, headers={"Content-Type": "application/json", **headers}, timeout=5)
        assert answer.status_code == 401
    assert inbox_rows(engine) == stored
    good = requests.post(url, data=body, headers={"X-Trello-Webhook": site.sign(body, url)}, timeout=5)
    assert good.status_code == 200 and good.json() == {"stored": True}
    again = requests.post(url, data=body, headers={"X-Trello-Webhook": site.sign(body, url)}, timeout=5)
    assert again.json() == {"stored": False}  # the same action twice is stored (and processed) once
    assert inbox_rows(engine) == stored + 1


def test_a_deleted_card_leaves_the_backlog(running) -> None:
    site, engine = running["site"], running["engine"]
    card = next(iter(site.board_named("Marketing backlog").cards.values()))
    assert site.delete(card.id)

    def gone() -> bool:
        with session_scope(engine) as db:
            return db.execute(select(ItemRow).where(ItemRow.external_id == card.id)).first() is None

    assert wait_for(gone), site.webhook_log
