"""The outbox honours a tool's long Retry-After: every write to that source waits that long, without losing an
attempt, and the tool is not called again for each remaining item in the meantime."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select

from service.db import session_scope
from service.outbox import OutboxWorker
from service.tables import OutboxRow, utcnow
from tests.contract.harness import ServiceUnderTest
from tests.contract.jira_harness import JiraHarness

EDIT = "/rest/api/3/issue/{issueIdOrKey}"


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch):
    harness = JiraHarness()
    harness.start(monkeypatch)
    yield harness
    harness.stop()


def test_a_long_retry_after_defers_the_whole_source_without_using_up_attempts(jira: JiraHarness, engine) -> None:
    service = ServiceUnderTest.build(engine, jira)
    try:
        planned = service.sync.run(jira.source_name, mode="full", trigger="cli").writes_planned
        assert planned > 10
        # Longer than the policy's longest wait (0.5 s in the contract suite): not waited out inside the drain.
        jira.state.inject(route=EDIT, method="PUT", status=429, headers={"Retry-After": "120"},
                          body={"errorMessages": ["Rate limit exceeded."]}, times=-1)
        before = utcnow()
        drained = OutboxWorker(engine=engine, sync_service=service.sync).drain()
        assert drained.sent == 0 and drained.failed == 0 and drained.deferred == planned
        assert jira.write_calls() == 1  # the first refusal stops the source's writes for this drain
        with session_scope(engine) as db:
            rows = list(db.execute(select(OutboxRow)).scalars())
        assert len(rows) == planned and all(row.status == "pending" for row in rows)
        assert all(row.attempts == 0 for row in rows)  # waiting as asked is not a failed attempt
        due = [row.next_attempt_at.replace(tzinfo=before.tzinfo) if row.next_attempt_at.tzinfo is None
               else row.next_attempt_at for row in rows]
        assert all(before + timedelta(seconds=119) <= moment <= utcnow() + timedelta(seconds=121) for moment in due)
        # Nothing is due before then: another drain right away sends nothing and calls nothing.
        again = OutboxWorker(engine=engine, sync_service=service.sync).drain()
        assert again.sent == 0 and jira.write_calls() == 1
    finally:
        service.close()
