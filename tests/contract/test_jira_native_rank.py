"""Native board order: with write_back.native_rank, the ranked items are ordered on the Jira board through
PUT /rest/agile/1.0/issue/rank (50 a call), once per change of order; a 207 names the issues left out."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import select

from service.config import AppConfig
from service.db import session_scope
from service.outbox import OutboxWorker
from service.planning import NATIVE_RANK
from service.sync import SyncService
from service.tables import ItemRow, OutboxRow
from tests.contract.harness import FAST_RETRIES
from tests.contract.jira_harness import JiraHarness

RANK = "PUT /rest/agile/1.0/issue/rank"


@pytest.fixture
def board(engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[JiraHarness, SyncService]]:
    harness = JiraHarness()
    harness.start(monkeypatch)
    harness.site.generate(80, start=1000)  # 122 issues in scope: three batches of rank calls
    config = harness.source_config()
    config["write_back"] = {"native_rank": True}
    service = SyncService(engine=engine, config=AppConfig.model_validate({"sources": [config]}), policy=FAST_RETRIES)
    yield harness, service
    service.close()
    harness.stop()


def ranked_ids(engine) -> list[str]:
    with session_scope(engine) as db:
        return list(db.execute(select(ItemRow.external_id).where(ItemRow.rank.is_not(None))
                               .order_by(ItemRow.rank)).scalars())


def board_order(harness: JiraHarness, ids: list[str]) -> list[str]:
    wanted = set(ids)
    return [str(issue.id) for issue in sorted(harness.site.issues.values(), key=lambda i: i.lexorank)
            if str(issue.id) in wanted]


def test_the_board_follows_the_ranking_once_per_change(board) -> None:
    harness, service = board
    assert service.run(harness.source_name, mode="full", trigger="cli").status == "succeeded"
    drained = OutboxWorker(engine=service.engine, sync_service=service).drain()
    assert drained.failed == 0, drained.errors
    ranked = ranked_ids(service.engine)
    assert len(ranked) > 100
    assert board_order(harness, ranked) == ranked
    calls = harness.state.hits("PUT", "/rest/agile/1.0/issue/rank")
    assert calls == -(-(len(ranked) - 1) // 50)  # the first issue anchors, 50 more per call

    # Nothing changed: no new order is queued and no rank call is made.
    assert service.run(harness.source_name, mode="full", trigger="cli").status == "succeeded"
    OutboxWorker(engine=service.engine, sync_service=service).drain()
    assert harness.state.hits("PUT", "/rest/agile/1.0/issue/rank") == calls

    # A user's edit moves one issue to the top: the board is ordered again.
    harness.time_passes()
    harness.site.set_field("MKT-40", "Reach", 10_000_000)
    harness.site.set_field("MKT-40", "Confidence", 100)
    assert service.run(harness.source_name, trigger="cli").status == "succeeded"
    OutboxWorker(engine=service.engine, sync_service=service).drain()
    ranked = ranked_ids(service.engine)
    assert ranked[0] == str(harness.site.find("MKT-40").id)
    assert board_order(harness, ranked) == ranked
    assert harness.state.hits("PUT", "/rest/agile/1.0/issue/rank") > calls


def test_issues_the_board_cannot_rank_are_named(board) -> None:
    harness, service = board
    assert service.run(harness.source_name, mode="full", trigger="cli").status == "succeeded"
    gone = ranked_ids(service.engine)[5]
    harness.site.delete(gone)  # deleted in Jira after we planned the order: Jira answers 207 for it
    drained = OutboxWorker(engine=service.engine, sync_service=service).drain()
    # Its own score and rank writes get Jira's 404; everything else is sent.
    assert drained.failed == 2 and all(f"/{gone}:" in error for error in drained.errors)
    with session_scope(service.engine) as db:
        row = db.execute(select(OutboxRow).where(OutboxRow.field == NATIVE_RANK)).scalar_one()
    assert row.status == "sent"
    assert row.last_error is not None and "1 issue(s) not ranked" in row.last_error and gone in row.last_error
