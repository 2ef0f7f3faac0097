"""Which comments taken over from a dead worker the outbox still posts: compared with what the tool holds,
whitespace aside, each held comment accounting for one row (the tool read is a stand-in: no HTTP here)."""

from __future__ import annotations

from typing import Any

from connectors.base import ReadsComments
from service.outbox import RECOVERED, OutboxWorker
from service.registry import tool_for
from service.tables import OutboxRow


class HoldsComments:
    """A connector stand-in holding the given comment bodies (newest first)."""

    def __init__(self, bodies: list[Any]) -> None:
        self.bodies = bodies
        self.asked: list[tuple[str, int]] = []

    def recent_comments(self, external_id: str, limit: int) -> list[Any]:
        self.asked.append((external_id, limit))
        return self.bodies[:limit]


def row(row_id: int, text: str, *, recovered: bool = True) -> OutboxRow:
    return OutboxRow(id=row_id, source="boards", external_id="c1", field="comment", value=text,
                     last_error=f"{RECOVERED} the claim of w1 expired" if recovered else None)


def kept(connector: Any, rows: list[OutboxRow], kind: str = "trello") -> list[int | None]:
    return [r.id for r in OutboxWorker._comments_not_landed(connector, tool_for(kind), "c1", rows)]


def test_a_held_comment_accounts_for_one_recovered_row_whitespace_aside() -> None:
    connector = HoldsComments(["KPI  on\ntrack", "older"])
    assert isinstance(connector, ReadsComments)
    assert kept(connector, [row(1, "KPI on track"), row(2, "KPI on track"), row(3, "new")]) == [2, 3]
    assert connector.asked == [("c1", 20)]


def test_rows_not_taken_over_are_sent_without_reading_the_tool() -> None:
    connector = HoldsComments(["KPI on track"])
    assert kept(connector, [row(1, "KPI on track", recovered=False)]) == [1]
    assert connector.asked == []


def test_jira_bodies_are_read_as_text_and_a_tool_without_comments_gets_them_again() -> None:
    adf = {"type": "doc", "version": 1, "content": [
        {"type": "paragraph", "content": [{"type": "text", "text": "KPI on track"}]}]}
    assert kept(HoldsComments([adf]), [row(1, "KPI on track"), row(2, "KPI off track")], kind="jira") == [2]
    assert kept(object(), [row(1, "KPI on track")]) == [1]  # no ReadsComments: at least once
