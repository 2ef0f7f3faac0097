"""One sync per source at a time: the lease belongs to a run, so two threads of one process exclude each other."""

from __future__ import annotations

import pytest

from connectors.base import RetryPolicy
from service.config import AppConfig
from service.sync import SourceBusy, SyncService


def test_a_second_run_of_the_same_source_is_refused_while_the_first_holds_the_lease(engine, monkeypatch) -> None:
    monkeypatch.setenv("LEASE_TEST_TOKEN", "unused-token")
    config = AppConfig.model_validate({"sources": [{
        "name": "mkt", "kind": "jira", "base_url": "http://127.0.0.1:9", "jql": "project = MKT",
        "auth": {"email": "ops@example.com", "token": {"env": "LEASE_TEST_TOKEN"}},
    }]})
    service = SyncService(engine=engine, config=config, policy=RetryPolicy(max_attempts=1))
    service.ensure_source_rows()
    assert service._acquire_lease("mkt", "another-run-of-this-process", min_gap=None)
    with pytest.raises(SourceBusy):
        service.run("mkt", mode="full", trigger="cli")
    service._release_lease("mkt", "another-run-of-this-process")
    # Free again: the run proceeds (and fails on the unreachable Jira, which is recorded, not raised).
    result = service.run("mkt", mode="full", trigger="cli")
    assert result.status == "failed" and result.error
    service.close()


def test_replicas_creating_the_same_source_rows_at_once_both_start(engine, monkeypatch) -> None:
    """Another replica inserts the sources row between our read and our insert: ours hits the unique key, and
    the second pass finds the row instead of failing start-up."""
    from sqlalchemy import event, func, insert, select
    from sqlalchemy.orm import Session

    from service.db import session_scope
    from service.tables import SourceRow

    monkeypatch.setenv("LEASE_TEST_TOKEN", "unused-token")
    config = AppConfig.model_validate({"sources": [{
        "name": "mkt", "kind": "jira", "base_url": "http://127.0.0.1:9", "jql": "project = MKT",
        "auth": {"email": "ops@example.com", "token": {"env": "LEASE_TEST_TOKEN"}},
    }]})
    raced = []

    def other_replica_first(session: Session, _context, _instances) -> None:
        if not raced and any(isinstance(obj, SourceRow) for obj in session.new):
            raced.append(True)
            with engine.begin() as other:  # a separate connection: the other replica's committed insert
                other.execute(insert(SourceRow.__table__).values(name="mkt", kind="jira", state="active",
                                                                 consecutive_failures=0, runs_since_reconcile=0,
                                                                 items_count=0))

    event.listen(Session, "before_flush", other_replica_first)
    try:
        SyncService(engine=engine, config=config).ensure_source_rows()
    finally:
        event.remove(Session, "before_flush", other_replica_first)
    assert raced == [True]
    with session_scope(engine) as db:
        assert db.scalar(select(func.count()).select_from(SourceRow)) == 1
