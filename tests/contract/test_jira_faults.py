"""Faults of the emulated Jira, through the real SyncService and the real `jira` library over HTTP.

Every case ends with the sync either succeeded with every item stored, or failed with a clear reason on its
SyncRun row; after a failure the stored backlog is what it was (same ids, same content hashes) and the stored
cursor never claims an issue that is not stored.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.engine import Engine

import connectors.base
from connectors.base import RetryPolicy, observe_calls
from connectors.jira import JiraConnector, parse_jira_time
from sandbox.common import Fault, SandboxState, ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, Issue, JiraSite, create_app
from service.config import AppConfig, SourceConfig
from service.db import session_scope
from service.sync import SyncResult, SyncService
from service.tables import ItemRow, SourceRow, SyncRun
from tests.contract.harness import ServiceUnderTest

SOURCE = "mkt-jira"
SEARCH = "/rest/api/3/search/jql"
SEARCH_KEY = f"POST {SEARCH}"
PAGE_SIZE = 10
# Small but measurable: back-off waits of 0.05, 0.1, 0.2, 0.4 s (plus up to 10% jitter) between 5 attempts.
POLICY = RetryPolicy(max_attempts=5, base_delay=0.05, max_delay=0.5)
# The registry builds Jira connectors with the default (5 s, 30 s): no config key reaches the timeout, so the
# service gets a factory. The `jira` library passes timeout[1] as a float, i.e. 0.5 s to connect and to read.
TIMEOUT = (1.0, 0.5)
SLOWER_THAN_TIMEOUT = 1.0


@dataclass
class Sandbox:
    site: JiraSite
    state: SandboxState
    server: ThreadedServer
    requests: list[tuple[float, str]] = field(default_factory=list)  # (monotonic time received, "METHOD path")

    def search_times(self) -> list[float]:
        return [moment for moment, what in list(self.requests) if what == SEARCH_KEY]

    def searches(self) -> int:
        return self.state.hits("POST", SEARCH)

    def inject_search(self, **kw: Any) -> Fault:
        return self.state.inject(route=SEARCH, method="POST", **kw)

    def let_searches_pass(self, count: int) -> Fault:
        """A fault without effect that takes the next `count` searches, so faults added after it apply later."""
        return self.inject_search(times=count)

    def mkt(self) -> list[Issue]:
        """The project's issues in the order the connector reads them (updated ASC, id ASC)."""
        with self.site.lock:
            issues = [issue for issue in self.site.issues.values() if issue.project == "MKT"]
        return sorted(issues, key=lambda issue: (issue.updated, issue.id))

    def full_run_searches(self) -> int:
        """Search calls of a clean full sync: one per page, plus the reconcile's one id listing."""
        return math.ceil(len(self.mkt()) / PAGE_SIZE) + 1


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[Sandbox]:
    monkeypatch.setenv("FAULTS_JIRA_TOKEN", DEFAULT_TOKEN)
    site = JiraSite()
    app = create_app(site)
    server = ThreadedServer(app)
    sandbox = Sandbox(site=site, state=app.state.sandbox, server=server)

    @app.middleware("http")  # outermost: sees every request, faulty or not, when it arrives
    async def record_arrival(request, call_next):  # noqa: ANN001, ANN202
        sandbox.requests.append((time.monotonic(), f"{request.method} {request.url.path}"))
        return await call_next(request)

    site.base_url = server.url
    server.start()
    yield sandbox
    server.stop()


def build_connector(source: SourceConfig) -> JiraConnector:
    auth = source.auth  # type: ignore[union-attr]
    return JiraConnector(
        base_url=source.base_url,  # type: ignore[union-attr]
        deployment=auth.deployment,
        email=auth.email,
        token=auth.token.resolve(),
        jql=source.jql,  # type: ignore[union-attr]
        page_size=source.page_size,  # type: ignore[union-attr]
        overlap_minutes=source.overlap_minutes,  # type: ignore[union-attr]
        policy=POLICY,
        timeout=TIMEOUT,
    )


@pytest.fixture
def service(engine: Engine, jira: Sandbox) -> Iterator[ServiceUnderTest]:
    config = AppConfig.model_validate({"sources": [{
        "name": SOURCE,
        "kind": "jira",
        "base_url": jira.server.url,
        "auth": {"deployment": "cloud", "email": DEFAULT_EMAIL, "token": {"env": "FAULTS_JIRA_TOKEN"}},
        "jql": "project = MKT",
        "page_size": PAGE_SIZE,
        "overlap_minutes": 0,  # no re-read window: a cursor that skips an edit shows here
    }]})
    sync = SyncService(engine=engine, config=config, policy=POLICY, connector_factory=build_connector)
    under_test = ServiceUnderTest(engine=engine, config=config, sync=sync)
    yield under_test
    under_test.close()


# -- reading the store ------------------------------------------------------------------------------


def backlog(engine: Engine) -> dict[str, str]:
    """external_id -> content_hash of every stored item."""
    with session_scope(engine) as db:
        rows = db.execute(select(ItemRow.external_id, ItemRow.content_hash).where(ItemRow.source == SOURCE))
        return {str(external_id): str(content_hash) for external_id, content_hash in rows.tuples()}


def titles(engine: Engine) -> dict[str, str]:
    with session_scope(engine) as db:
        rows = db.execute(select(ItemRow.external_id, ItemRow.title).where(ItemRow.source == SOURCE))
        return {str(external_id): str(title) for external_id, title in rows.tuples()}


def stored_cursor(engine: Engine) -> str | None:
    with session_scope(engine) as db:
        row = db.get(SourceRow, SOURCE)
        return row.cursor if row is not None else None


def run_row(engine: Engine, run_id: int) -> dict[str, Any]:
    with session_scope(engine) as db:
        run = db.get(SyncRun, run_id)
        assert run is not None
        return {"status": run.status, "error": run.error or "", "pages": run.pages, "items_seen": run.items_seen}


def assert_cursor_covers_only_stored(engine: Engine, jira: Sandbox) -> None:
    """Every issue the stored cursor claims to have read (updated <= cursor) is in the store."""
    cursor = parse_jira_time(stored_cursor(engine))
    if cursor is None:
        return
    stored = set(backlog(engine))
    missing = [issue.key for issue in jira.mkt() if issue.updated <= cursor and str(issue.id) not in stored]
    assert not missing, f"the cursor {cursor.isoformat()} claims issues that were never stored: {missing}"


def full_sync(service: ServiceUnderTest, jira: Sandbox) -> dict[str, str]:
    """A clean full sync; returns the stored backlog."""
    result = service.sync.run(SOURCE, mode="full")
    assert result.status == "succeeded", result.error
    stored = backlog(service.engine)
    assert set(stored) == {str(issue.id) for issue in jira.mkt()}
    return stored


def assert_all_stored(service: ServiceUnderTest, jira: Sandbox, result: SyncResult) -> None:
    assert result.status == "succeeded", result.error
    assert run_row(service.engine, result.run_id)["status"] == "succeeded"
    assert set(backlog(service.engine)) == {str(issue.id) for issue in jira.mkt()}
    assert_cursor_covers_only_stored(service.engine, jira)


def assert_failed_and_unchanged(service: ServiceUnderTest, jira: Sandbox, result: SyncResult,
                                before: dict[str, str], cursor_before: str | None) -> str:
    """The run failed with a reason on its row, the backlog is as it was; returns the row's error."""
    assert result.status == "failed"
    row = run_row(service.engine, result.run_id)
    assert row["status"] == "failed"
    assert row["error"], "a failed run must say why"
    assert backlog(service.engine) == before
    after = parse_jira_time(stored_cursor(service.engine))
    previous = parse_jira_time(cursor_before)
    assert previous is None or (after is not None and after <= previous), "a failed run moved the cursor on"
    assert_cursor_covers_only_stored(service.engine, jira)
    return str(row["error"])


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in zip(times, times[1:], strict=False)]


# -- 1. rate limiting -----------------------------------------------------------------------------------


def test_429_storm_is_waited_out_as_retry_after_says(service: ServiceUnderTest, jira: Sandbox) -> None:
    jira.inject_search(status=429, headers={"Retry-After": "0.2"}, times=3,
                       body={"errorMessages": ["Rate limit exceeded."], "errors": {}})
    started = time.monotonic()
    result = service.sync.run(SOURCE, mode="full")
    elapsed = time.monotonic() - started

    assert_all_stored(service, jira, result)
    assert jira.state.statuses["429"] == 3
    assert jira.searches() == jira.full_run_searches() + 3
    assert elapsed >= 0.6
    # The three refused calls and the one that got through, each at least Retry-After after the one before
    # (the back-off alone would have waited 0.05 s and 0.1 s).
    spacing = gaps(jira.search_times()[:4])
    assert len(spacing) == 3
    assert all(gap >= 0.2 for gap in spacing), spacing


# -- 2. server errors ---------------------------------------------------------------------------------


def test_5xx_burst_is_retried_with_backoff(service: ServiceUnderTest, jira: Sandbox) -> None:
    for status in (500, 502, 503):
        jira.inject_search(status=status)
    result = service.sync.run(SOURCE, mode="full")

    assert_all_stored(service, jira, result)
    assert {code: jira.state.statuses[code] for code in ("500", "502", "503")} == {"500": 1, "502": 1, "503": 1}
    assert jira.searches() == jira.full_run_searches() + 3
    spacing = gaps(jira.search_times()[:4])
    assert [gap >= wait for gap, wait in zip(spacing, (0.05, 0.1, 0.2), strict=True)] == [True] * 3, spacing


def test_permanent_503_fails_after_max_attempts(service: ServiceUnderTest, jira: Sandbox) -> None:
    before = full_sync(service, jira)
    cursor = stored_cursor(service.engine)
    searches = jira.searches()
    jira.inject_search(status=503, times=-1, body={"errorMessages": ["Service Unavailable"]})

    result = service.sync.run(SOURCE, mode="full")
    error = assert_failed_and_unchanged(service, jira, result, before, cursor)
    assert "HTTP 503" in error
    assert jira.searches() - searches == POLICY.max_attempts
    assert stored_cursor(service.engine) == cursor


# -- 3. timeouts ----------------------------------------------------------------------------------------


def test_one_slow_answer_times_out_and_is_retried(service: ServiceUnderTest, jira: Sandbox) -> None:
    jira.inject_search(delay=SLOWER_THAN_TIMEOUT)
    started = time.monotonic()
    result = service.sync.run(SOURCE, mode="full")

    assert_all_stored(service, jira, result)
    assert jira.searches() == jira.full_run_searches() + 1
    assert time.monotonic() - started >= TIMEOUT[1]  # it did wait for the read timeout once


def test_always_slow_fails_with_a_timeout_reason(service: ServiceUnderTest, jira: Sandbox) -> None:
    before = full_sync(service, jira)
    cursor = stored_cursor(service.engine)
    searches = jira.searches()
    jira.inject_search(delay=SLOWER_THAN_TIMEOUT, times=-1)

    result = service.sync.run(SOURCE, mode="full")
    error = assert_failed_and_unchanged(service, jira, result, before, cursor)
    assert "Timeout" in error or "timed out" in error, error
    assert jira.searches() - searches == POLICY.max_attempts


# -- 4. dropped connections -----------------------------------------------------------------------------


def test_connection_reset_once_is_retried(service: ServiceUnderTest, jira: Sandbox) -> None:
    jira.inject_search(reset_connection=True)
    result = service.sync.run(SOURCE, mode="full")

    assert_all_stored(service, jira, result)
    assert jira.searches() == jira.full_run_searches() + 1


def test_reset_fault_reaches_the_client_as_a_dropped_connection(
        service: ServiceUnderTest, jira: Sandbox, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int | None] = []
    monkeypatch.setattr(connectors.base, "_observers", [])  # restored after the test
    observe_calls(lambda _vendor, status, _seconds: seen.append(status))
    jira.inject_search(reset_connection=True)

    result = service.sync.run(SOURCE, mode="full")
    assert result.status == "succeeded", result.error
    assert None in seen, f"every call got an HTTP status: {sorted(set(seen), key=str)}"


# -- 5. malformed answers ---------------------------------------------------------------------------


def test_malformed_json_fails_clearly_and_keeps_the_backlog(service: ServiceUnderTest, jira: Sandbox) -> None:
    before = full_sync(service, jira)
    cursor = stored_cursor(service.engine)
    jira.inject_search(status=200, body="{not json", times=-1)

    result = service.sync.run(SOURCE, mode="full")
    error = assert_failed_and_unchanged(service, jira, result, before, cursor)
    assert "not JSON" in error, error
    assert stored_cursor(service.engine) == cursor


# -- 6. a server handing back the same page token ---------------------------------------------------


def test_repeating_page_token_fails_clearly(service: ServiceUnderTest, jira: Sandbox) -> None:
    before = full_sync(service, jira)
    cursor = stored_cursor(service.engine)
    searches = jira.searches()
    jira.state.flags["repeat_page_token"] = True

    result = service.sync.run(SOURCE, mode="full")
    error = assert_failed_and_unchanged(service, jira, result, before, cursor)
    assert "came back a second time" in error, error
    assert jira.searches() - searches == 2  # stopped at the first repeat, no retry loop
    with session_scope(service.engine) as db:
        state = db.get(SourceRow, SOURCE)
        assert state is not None and state.state == "paused"


# -- 7. pages that change while they are read ---------------------------------------------------------


@dataclass
class MidScanEdits:
    read_early: Issue  # on page 1: read before its edit
    read_late: Issue  # on page 4: read after its edit
    deleted: Issue  # on page 5: deleted before its page is read
    early_title: str
    late_title: str
    result: SyncResult


def sync_while_editing(service: ServiceUnderTest, jira: Sandbox) -> MidScanEdits:
    """A full sync whose 2nd page is slow; while it waits, a user edits and deletes issues."""
    order = jira.mkt()
    assert len(order) > 4 * PAGE_SIZE
    early, late, deleted = order[0], order[3 * PAGE_SIZE + 5], order[-1]
    early_title, late_title = f"{early.key} edited mid-scan", f"{late.key} edited mid-scan"
    jira.let_searches_pass(1)
    jira.inject_search(delay=0.6)  # the 2nd page: its request has arrived and waits
    problems: list[BaseException] = []

    def user() -> None:
        try:
            deadline = time.monotonic() + 10
            while jira.searches() < 2:
                if time.monotonic() > deadline:
                    raise TimeoutError("the sync never asked for its 2nd page")
                time.sleep(0.005)
            jira.site.set_field(early.key, "summary", early_title)
            time.sleep(0.02)  # the two edits land on different milliseconds
            jira.site.set_field(late.key, "summary", late_title)
            assert jira.site.delete(deleted.key)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test thread
            problems.append(exc)

    editor = threading.Thread(target=user, name="jira-user")
    editor.start()
    result = service.sync.run(SOURCE, mode="full")
    editor.join(timeout=15)
    assert not problems, problems
    return MidScanEdits(early, late, deleted, early_title, late_title, result)


def test_scan_completes_while_pages_change(service: ServiceUnderTest, jira: Sandbox) -> None:
    original_early_title = jira.mkt()[0].fields["summary"]
    edits = sync_while_editing(service, jira)

    assert_all_stored(service, jira, edits.result)  # 41 issues: the deleted one is neither read nor kept
    stored = titles(service.engine)
    assert str(edits.deleted.id) not in stored
    assert stored[str(edits.read_late.id)] == edits.late_title
    assert stored[str(edits.read_early.id)] == original_early_title  # page 1 was read before the edit

    # An edit between two pulls is read by the next incremental sync.
    later = jira.mkt()[PAGE_SIZE]
    jira.site.set_field(later.key, "summary", "edited between syncs")
    again = service.sync.run(SOURCE)
    assert again.status == "succeeded", again.error
    assert again.items_seen < len(jira.mkt())
    stored = titles(service.engine)
    assert stored[str(later.id)] == "edited between syncs"
    assert stored[str(edits.read_late.id)] == edits.late_title


def test_edit_of_an_already_read_page_is_picked_up_next_sync(service: ServiceUnderTest, jira: Sandbox) -> None:
    edits = sync_while_editing(service, jira)
    assert edits.result.status == "succeeded", edits.result.error

    again = service.sync.run(SOURCE)
    assert again.status == "succeeded", again.error
    stored = titles(service.engine)
    assert stored[str(edits.read_early.id)] == edits.early_title


# -- 8. failing mid-way, then resuming ---------------------------------------------------------------


def test_failure_on_the_third_page_keeps_two_pages_and_resumes(service: ServiceUnderTest, jira: Sandbox) -> None:
    order = jira.mkt()
    assert len(order) == 42
    # Pages 1 and 2 pass; the 3rd page and every retry of it answer 503. (Injecting from the progress callback
    # would race the prefetching reader, which asks for page 3 while page 2 is being stored.)
    jira.let_searches_pass(2)
    jira.inject_search(status=503, times=-1)
    seen: list[int] = []

    first = service.sync.run(SOURCE, mode="full", progress=seen.append)
    assert first.status == "failed"
    row = run_row(service.engine, first.run_id)
    assert row["status"] == "failed" and "HTTP 503" in row["error"], row
    assert (row["pages"], row["items_seen"]) == (2, 2 * PAGE_SIZE)
    # The two pages read before the failure are stored (as one batch or two: service.sync.prefetch joins small
    # pages that come within BATCH_SECONDS of each other) before the error ends the run.
    assert seen in ([2 * PAGE_SIZE], [PAGE_SIZE, 2 * PAGE_SIZE])
    assert jira.searches() == 2 + POLICY.max_attempts

    # Exactly the two pages are stored, and the cursor covers them and nothing more.
    first_pages = order[: 2 * PAGE_SIZE]
    assert set(backlog(service.engine)) == {str(issue.id) for issue in first_pages}
    cursor = parse_jira_time(stored_cursor(service.engine))
    assert isinstance(cursor, datetime)
    assert cursor == max(issue.updated for issue in first_pages)
    assert all(issue.updated > cursor for issue in order[2 * PAGE_SIZE:])
    assert_cursor_covers_only_stored(service.engine, jira)
    before = backlog(service.engine)

    jira.state.clear_faults()
    second = service.sync.run(SOURCE)
    assert_all_stored(service, jira, second)
    assert len(backlog(service.engine)) == 42
    # It resumed from the cursor: only what the first run did not store (and the cursor's own issue, read
    # again because the bound is inclusive) was read.
    assert second.items_seen == sum(1 for issue in order if issue.updated >= cursor)
    assert second.items_seen < 42
    after = backlog(service.engine)
    assert {key: after[key] for key in before} == before
