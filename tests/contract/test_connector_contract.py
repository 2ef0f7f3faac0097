"""The shared contract every work-item connector meets, run through the service against its sandbox:
full sync, resume from cursor, 429 then success, 401 -> paused source, repeating page -> clear failure,
a second sync writes nothing, every scripted route was hit, and a comment a dead worker posted is not posted
again (the connector reads the item's comments back)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from connectors.base import ReadsComments
from service.db import session_scope
from service.outbox import OutboxWorker, claim
from service.registry import tool_for
from service.sync import SourceUnavailable
from service.tables import ItemRow, OutboxRow, SourceRow, SyncRun
from tests.contract import asana_harness, jira_harness, trello_harness  # noqa: F401  (register the harnesses)
from tests.contract.harness import HARNESSES, Harness, ServiceUnderTest


@pytest.fixture(params=sorted(HARNESSES))
def harness(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch):
    h: Harness = HARNESSES[request.param]()
    h.start(monkeypatch)
    yield h
    h.stop()


@pytest.fixture
def service(harness: Harness, engine) -> ServiceUnderTest:
    under_test = ServiceUnderTest.build(engine, harness)
    yield under_test
    under_test.close()


def item_count(engine, source: str) -> int:
    with session_scope(engine) as db:
        return db.scalar(select(func.count()).select_from(ItemRow).where(ItemRow.source == source)) or 0


def test_full_sync_then_write_back_then_nothing_more(harness: Harness, service: ServiceUnderTest) -> None:
    result = service.sync.run(harness.source_name, mode="full", trigger="cli")
    assert result.status == "succeeded", result.error
    assert result.items_seen == harness.expected_items()
    assert item_count(service.engine, harness.source_name) == harness.expected_items()
    assert result.writes_planned > 0

    drained = OutboxWorker(engine=service.engine, sync_service=service.sync).drain()
    assert drained.failed == 0, drained.errors
    assert drained.sent == result.writes_planned
    writes_after_first = harness.write_calls()
    assert writes_after_first > 0

    # Every route the connector is scripted to use was hit at least once.
    hit = harness.state.snapshot()["counters"]
    missing = [route for route in harness.scripted_routes() if not hit.get(route)]
    assert not missing, f"routes never called: {missing}"

    # Second sync: the tool now holds what we wrote, so nothing is planned and nothing is sent.
    again = service.sync.run(harness.source_name, mode="full", trigger="cli")
    assert again.status == "succeeded", again.error
    assert again.writes_planned == 0
    OutboxWorker(engine=service.engine, sync_service=service.sync).drain()
    assert harness.write_calls() == writes_after_first


def test_resume_from_cursor_reads_only_changes(harness: Harness, service: ServiceUnderTest) -> None:
    assert service.sync.run(harness.source_name, mode="full", trigger="cli").status == "succeeded"
    OutboxWorker(engine=service.engine, sync_service=service.sync).drain()
    harness.time_passes()
    service.sync.run(harness.source_name, trigger="cli")  # reads back our own writes once
    harness.time_passes()
    changed_id = harness.change_an_input()
    before = harness.pull_calls()
    result = service.sync.run(harness.source_name, trigger="cli")
    assert result.status == "succeeded", result.error
    assert result.items_seen < harness.expected_items()
    assert harness.pull_calls() - before <= 2
    with session_scope(service.engine) as db:
        planned = list(db.execute(select(OutboxRow).where(OutboxRow.status == "pending")).scalars())
    assert changed_id in {row.external_id for row in planned if row.field == "score"}


def test_429_then_success(harness: Harness, service: ServiceUnderTest) -> None:
    harness.inject_on_pull(status=429, headers={"Retry-After": "0.1"}, body=harness.rate_limit_body())
    before = harness.pull_calls()
    result = service.sync.run(harness.source_name, mode="full", trigger="cli")
    assert result.status == "succeeded", result.error
    assert result.items_seen == harness.expected_items()
    assert harness.state.statuses.get("429", 0) >= 1
    assert harness.pull_calls() - before >= 2  # the refused call was made again


def test_401_pauses_the_source_as_needing_credentials(harness: Harness, service: ServiceUnderTest) -> None:
    harness.inject_on_pull(status=401, times=-1)
    result = service.sync.run(harness.source_name, mode="full", trigger="cli")
    assert result.status == "failed"
    assert "needs new credentials" in (result.error or "")
    with session_scope(service.engine) as db:
        state = db.get(SourceRow, harness.source_name)
        assert state is not None and state.state == "needs_credentials"
    calls = harness.pull_calls()
    with pytest.raises(SourceUnavailable):
        service.sync.run(harness.source_name, trigger="schedule")
    assert harness.pull_calls() == calls  # no retry loop against a tool that refuses us


def test_repeating_page_fails_clearly_and_keeps_the_backlog(harness: Harness, service: ServiceUnderTest) -> None:
    assert service.sync.run(harness.source_name, mode="full", trigger="cli").status == "succeeded"
    stored = item_count(service.engine, harness.source_name)
    harness.make_pages_repeat()
    result = service.sync.run(harness.source_name, mode="full", trigger="cli")
    assert result.status == "failed"
    assert "came back a second time" in (result.error or "")
    assert item_count(service.engine, harness.source_name) == stored
    with session_scope(service.engine) as db:
        run = db.get(SyncRun, result.run_id)
        assert run is not None and run.status == "failed" and run.error


def test_a_comment_a_dead_worker_posted_is_not_posted_again(harness: Harness, service: ServiceUnderTest) -> None:
    assert service.sync.run(harness.source_name, mode="full", trigger="cli").status == "succeeded"
    assert OutboxWorker(engine=service.engine, sync_service=service.sync).drain().failed == 0
    with session_scope(service.engine) as db:
        external_id = db.scalars(select(ItemRow.external_id).where(ItemRow.source == harness.source_name)
                                 .order_by(ItemRow.external_id)).first()
        assert external_id is not None
        text = "KPI « Email leads » (email-leads): 80 % of the target 🎯\n(written by backlog-sync)"
        db.add(OutboxRow(source=harness.source_name, external_id=external_id, field="comment", value=text))
    connector = service.sync.connector(harness.source_name)
    mapping = tool_for(harness.kind).mapping
    assert isinstance(connector, ReadsComments)
    before = harness.comment_count(external_id)
    # A worker claims the comment, posts it and dies before recording that it did; its claim lapses.
    (row,) = claim(service.engine, limit=10, claim_seconds=60)
    connector.add_comment(external_id, mapping.comment_body(text, context=service.sync.context(harness.source_name)))
    assert harness.comment_count(external_id) == before + 1
    with session_scope(service.engine) as db:
        db.execute(update(OutboxRow).where(OutboxRow.id == row.id)
                   .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))

    drained = OutboxWorker(engine=service.engine, sync_service=service.sync).drain()
    assert (drained.sent, drained.failed) == (1, 0), drained.errors
    assert harness.comment_count(external_id) == before + 1  # not posted a second time
    latest = connector.recent_comments(external_id, 1)
    assert [mapping.comment_text(body).split() for body in latest] == [text.split()]
    # A comment that never reached the tool is posted, even when taken over from a dead worker.
    with session_scope(service.engine) as db:
        db.add(OutboxRow(source=harness.source_name, external_id=external_id, field="comment", value=text + " 2"))
    claim(service.engine, limit=10, claim_seconds=60)
    with session_scope(service.engine) as db:
        db.execute(update(OutboxRow).where(OutboxRow.status == "sending")
                   .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))
    assert OutboxWorker(engine=service.engine, sync_service=service.sync).drain().sent == 1
    assert harness.comment_count(external_id) == before + 2
