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
