"""The sync's page reader: pages read on a thread and joined into batches of about a thousand records, with
deletions, cursors, errors and slow tools handled as storing the pages one by one would."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from connectors.base import Page
from service.sync import prefetch

FOREVER = float("inf")  # no time limit: the shape of the batches depends on the pages alone


def pages_of(sizes: list[int], *, deleted: dict[int, list[str]] | None = None,
             cursors: dict[int, str | None] | None = None) -> Iterator[Page]:
    """Pages of `sizes` records; page n's records are "n.0", "n.1"...; its cursor is "c<n>" unless given."""
    for number, size in enumerate(sizes):
        cursor = (cursors or {}).get(number, f"c{number}")
        yield Page(records=[{"id": f"{number}.{i}"} for i in range(size)], cursor=cursor,
                   deleted_ids=list((deleted or {}).get(number, [])))


def test_small_pages_are_joined_into_batches_of_the_record_count_in_order() -> None:
    batches = list(prefetch(pages_of([100] * 25), batch_records=1000, batch_seconds=FOREVER))
    assert [(len(page.records), joined) for _, page, joined in batches] == [(1000, 10), (1000, 10), (500, 5)]
    assert [page.cursor for _, page, _ in batches] == ["c9", "c19", "c24"]  # each batch's last page's cursor
    ids = [record["id"] for _, page, _ in batches for record in page.records]
    assert ids == [f"{n}.{i}" for n in range(25) for i in range(100)]
    starts = [started for started, _, _ in batches]
    assert starts == sorted(starts)  # when each batch's first read began


def test_large_pages_stay_one_batch_each() -> None:
    batches = list(prefetch(pages_of([1000, 1000, 22]), batch_records=1000, batch_seconds=FOREVER))
    assert [(len(page.records), joined) for _, page, joined in batches] == [(1000, 1), (1000, 1), (22, 1)]


def test_a_page_that_deletes_ends_its_batch_so_later_pages_are_stored_after_the_deletion() -> None:
    # Page 2 removes "0.1"; were page 3 joined with it, a record of page 3 would be stored before that removal.
    batches = list(prefetch(pages_of([3, 3, 3, 3], deleted={1: ["0.1"]}), batch_records=1000, batch_seconds=FOREVER))
    assert [(len(page.records), page.deleted_ids, joined) for _, page, joined in batches] == [
        (6, ["0.1"], 2), (6, [], 2)]


def test_a_page_without_cursor_leaves_the_batch_cursor_at_the_last_page_that_had_one() -> None:
    batches = list(prefetch(pages_of([5, 5, 5], cursors={0: None, 2: None}), batch_records=1000, batch_seconds=FOREVER))
    assert [(page.cursor, joined) for _, page, joined in batches] == [("c1", 3)]
    (only,) = list(prefetch(pages_of([5, 5], cursors={0: None, 1: None}), batch_records=1000, batch_seconds=FOREVER))
    assert only[1].cursor is None  # nothing moved the cursor: the stored one stays


def test_an_error_comes_after_the_batch_of_the_pages_read_before_it() -> None:
    def failing() -> Iterator[Page]:
        yield from pages_of([10, 10, 10])
        raise RuntimeError("HTTP 503 on page 4")

    seen: list[tuple[int, int]] = []
    with pytest.raises(RuntimeError, match="page 4"):
        for _, page, joined in prefetch(failing(), batch_records=1000, batch_seconds=FOREVER):
            seen.append((len(page.records), joined))
    assert seen == [(30, 3)]  # the three pages read are stored before the error ends the run


def test_a_page_is_handed_over_when_the_next_one_is_late_not_when_it_arrives() -> None:
    def late_second() -> Iterator[Page]:
        pages = pages_of([10, 10])
        yield next(pages)
        time.sleep(1.0)  # a tool retrying, or rate limited
        yield next(pages)

    started = time.monotonic()
    handed = [(joined, time.monotonic() - started) for _, _, joined in prefetch(late_second(), batch_seconds=0.1)]
    assert [joined for joined, _ in handed] == [1, 1]
    assert handed[0][1] < 0.8, handed  # stored 0.1 s after it came, not after the late page


def test_a_slow_tool_gets_its_batch_stored_without_waiting_for_a_thousand_records() -> None:
    def slow() -> Iterator[Page]:
        for page in pages_of([10] * 6):
            time.sleep(0.05)
            yield page

    batches = list(prefetch(slow(), batch_records=1000, batch_seconds=0.12))
    sizes = [joined for _, _, joined in batches]
    assert sum(sizes) == 6 and len(sizes) >= 2 and max(sizes) <= 4, sizes


def test_the_reader_stops_and_closes_the_pages_when_the_consumer_stops_early() -> None:
    closed: list[bool] = []

    def endless() -> Iterator[Page]:
        try:
            number = 0
            while True:
                yield Page(records=[{"id": str(number)}] * 500, cursor=str(number))
                number += 1
        finally:
            closed.append(True)

    reader = prefetch(endless(), batch_records=1000, batch_seconds=FOREVER)
    _, first, joined = next(reader)
    assert (len(first.records), joined) == (1000, 2)
    reader.close()  # the consumer failed while storing: the reader thread must not keep reading
    assert closed == [True]
