"""The Asana connector against the emulated workspace over real HTTP with the real asana SDK: the one retry policy
(SDK retries off), typed errors, timeouts, the events sync tokens (first 412, expiry, paging), deleted tasks and
tasks removed from a project, the per-token rate limit and the 50 reads / 15 writes in flight."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from connectors.asana import (
    MAX_READS_IN_FLIGHT,
    MAX_WRITES_IN_FLIGHT,
    AsanaConnector,
    plan_requests_per_minute,
    read_cursor,
)
from connectors.base import (
    AuthError,
    FatalError,
    PaginationLoopError,
    RateLimiter,
    ReadsComments,
    RetriableError,
    RetryPolicy,
)
from sandbox.asana import DEFAULT_TOKEN, AsanaWorkspace, create_app
from sandbox.asana_data import EN_PROJECT, FR_PROJECT
from sandbox.common import SandboxState, ThreadedServer

FAST = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=5.0)
TASKS = "/projects/{project_gid}/tasks"
BOTH = "1203000000000024"  # "Brand guidelines update", in the English and the French project


class Asana:
    def __init__(self, workspace: AsanaWorkspace, state: SandboxState, url: str) -> None:
        self.workspace, self.state, self.url = workspace, state, url

    def connector(self, **kw) -> AsanaConnector:
        kw.setdefault("policy", FAST)
        return AsanaConnector(base_url=self.url, token=DEFAULT_TOKEN, projects=[EN_PROJECT, FR_PROJECT], **kw)


@pytest.fixture
def asana() -> Iterator[Asana]:
    workspace = AsanaWorkspace()
    app = create_app(workspace)
    server = ThreadedServer(app)
    workspace.base_url = server.url
    server.start()
    yield Asana(workspace, app.state.sandbox, server.url)
    server.stop()


def full_cursor(connector: AsanaConnector) -> str:
    pages = list(connector.pull(None))
    assert pages[-1].cursor is not None
    return pages[-1].cursor


def test_plan_limits() -> None:
    assert plan_requests_per_minute("free") == 150
    assert plan_requests_per_minute("paid") == 1500
    assert plan_requests_per_minute("paid", 400) == 400


def test_the_sdk_retries_are_off_and_the_one_policy_retries(asana: Asana) -> None:
    connector = asana.connector()
    assert connector._client.rest_client is connector.transport
    # urllib3 normalises retries=False to Retry(total=False): no retry, errors raised at once.
    assert connector.transport.pool_manager.connection_pool_kw["retries"].total is False
    asana.state.inject(route=TASKS, method="GET", status=503, times=2, body={"errors": [{"message": "down"}]})
    pages = list(connector.pull(None))
    assert sum(len(p.records) for p in pages) == len(asana.workspace.tasks)
    assert connector.transport.retries == 2
    assert asana.state.hits("GET", TASKS) == 4  # two refused, then the English and the French project


def test_retry_after_is_honoured(asana: Asana) -> None:
    connector = asana.connector()
    asana.state.inject(route=TASKS, method="GET", status=429, headers={"Retry-After": "1"}, times=1,
                       body={"errors": [{"message": "You've made too many requests"}]})
    started = time.monotonic()
    list(connector.pull(None))
    assert time.monotonic() - started >= 1.0
    assert connector.transport.retries == 1


@pytest.mark.parametrize("status", [401, 403])
def test_refused_credentials_raise_auth_error(asana: Asana, status: int) -> None:
    asana.state.inject(route="/projects/{project_gid}", method="GET", status=status, times=-1)
    with pytest.raises(AuthError):
        asana.connector().describe()
    assert asana.state.hits("GET", "/projects/{project_gid}") == 1  # never retried


def test_every_call_has_a_timeout(asana: Asana) -> None:
    asana.state.inject(route="/tasks/{task_gid}", method="GET", delay=1.5, times=-1)
    connector = asana.connector(timeout=(1.0, 0.3), policy=RetryPolicy(max_attempts=2, base_delay=0.01))
    started = time.monotonic()
    with pytest.raises(RetriableError, match="Timeout"):
        connector.fetch(["1203000000000001"])
    assert time.monotonic() - started < 3.5
    assert connector.transport.retries == 1


def test_a_dropped_connection_is_retried(asana: Asana) -> None:
    asana.state.inject(route="/tasks/{task_gid}", method="GET", reset_connection=True, times=1)
    connector = asana.connector()
    assert [t["gid"] for t in connector.fetch(["1203000000000001"])] == ["1203000000000001"]
    assert connector.transport.retries == 1


def test_first_sync_takes_a_token_per_project_before_reading(asana: Asana) -> None:
    connector = asana.connector()
    pages = list(connector.pull(None))
    assert [p.cursor is not None for p in pages] == [True, True]  # one page each; each carries its project's token
    state = read_cursor(pages[-1].cursor)
    assert set(state) == {EN_PROJECT, FR_PROJECT} and all(entry["sync"] for entry in state.values())
    gids = [t["gid"] for p in pages for t in p.records]
    assert len(gids) == len(set(gids)) == len(asana.workspace.tasks)  # the task in both projects comes once
    assert asana.state.statuses["412"] == 2  # the first /events call of each project answers 412 with a token


def test_incremental_reads_changes_deletions_and_removals(asana: Asana) -> None:
    connector = asana.connector()
    cursor = full_cursor(connector)
    space = asana.workspace
    space.set_field("1203000000000001", "Reach", 4242)
    space.move_to_section("1203000000000003", EN_PROJECT, "Done")
    space.delete("1203000000000004")
    space.remove_from_project("1203000000000006", EN_PROJECT)  # only in the English project: it leaves
    space.remove_from_project(BOTH, FR_PROJECT)  # still in the English project: it stays
    listing = asana.state.hits("GET", TASKS)
    pages = list(connector.pull(cursor))
    assert asana.state.hits("GET", TASKS) == listing  # no listing: the events named what changed
    records = {t["gid"]: t for p in pages for t in p.records}
    deleted = {gid for p in pages for gid in p.deleted_ids}
    assert set(records) == {"1203000000000001", "1203000000000003", BOTH}
    assert deleted == {"1203000000000004", "1203000000000006"}
    reach = next(f for f in records["1203000000000001"]["custom_fields"] if f["name"] == "Reach")
    assert reach["number_value"] == 4242

    # Nothing changed since: the next run reads events only.
    again = list(connector.pull(pages[-1].cursor))
    assert [t for p in again for t in p.records] == [] and [g for p in again for g in p.deleted_ids] == []


def test_an_expired_token_falls_back_to_a_modified_since_read_and_says_so(
        asana: Asana, caplog: pytest.LogCaptureFixture) -> None:
    connector = asana.connector()
    cursor = full_cursor(connector)
    asana.workspace.set_field("1203000000000002", "Effort", 5)
    asana.workspace.expire_sync_tokens()
    with caplog.at_level(logging.WARNING, logger="backlog_sync.connectors.asana"):
        pages = list(connector.pull(cursor))
    assert sum("invalid or too old" in r.getMessage() for r in caplog.records) == 2  # one per project
    assert asana.state.hits("GET", "/tasks") == 2  # GET /tasks?project=...&modified_since=...
    assert "1203000000000002" in {t["gid"] for p in pages for t in p.records}
    fresh = read_cursor(pages[-1].cursor)
    old = read_cursor(cursor)
    assert all(fresh[p]["sync"] != old[p]["sync"] for p in (EN_PROJECT, FR_PROJECT))
    # The fresh tokens from the 412s work: the next run is back on events.
    asana.workspace.set_field("1203000000000007", "Effort", 3)
    after = list(connector.pull(pages[-1].cursor))
    assert {t["gid"] for p in after for t in p.records} == {"1203000000000007"}
    assert asana.state.hits("GET", "/tasks") == 2


def test_many_changes_are_read_with_one_modified_since_read(asana: Asana) -> None:
    asana.workspace.generate(150)
    connector = asana.connector()
    cursor = full_cursor(connector)
    english = [gid for gid, t in asana.workspace.tasks.items() if set(t.projects) == {EN_PROJECT}][:120]
    for gid in english:
        asana.workspace.set_field(gid, "Effort", 9, notify=False)
    single = asana.state.hits("GET", "/tasks/{task_gid}")
    pages = list(connector.pull(cursor))
    assert asana.state.hits("GET", "/tasks/{task_gid}") == single  # not 120 single reads
    assert asana.state.hits("GET", "/tasks") == 2  # one modified_since read, two pages of 100
    assert set(english) <= {t["gid"] for p in pages for t in p.records}
    assert asana.state.hits("GET", "/events") >= 2 + 2 + 1  # the 412s, two pages of events, the French project


def test_a_repeating_sync_token_stops_the_run(asana: Asana) -> None:
    connector = asana.connector()
    cursor = full_cursor(connector)
    for n in range(150):
        asana.workspace.set_field("1203000000000001", "Reach", n, notify=False)
    asana.state.flags["repeat_sync_token"] = True
    with pytest.raises(PaginationLoopError, match="came back a second time"):
        list(connector.pull(cursor))


def test_list_ids_and_fetch_respect_the_configured_projects(asana: Asana) -> None:
    connector = AsanaConnector(base_url=asana.url, token=DEFAULT_TOKEN, projects=[FR_PROJECT], policy=FAST)
    ids = list(connector.list_ids())
    assert len(ids) == sum(1 for t in asana.workspace.tasks.values() if FR_PROJECT in t.projects)
    assert connector.fetch(["1203000000000001"]) == []  # an English task is not in scope
    assert connector.fetch(["999"]) == []  # gone


def test_a_task_the_token_cannot_see_is_left_out_while_a_dead_token_still_pauses(asana: Asana) -> None:
    connector = asana.connector()
    hidden, visible = "1203000000000001", "1203000000000002"
    asana.workspace.hidden_tasks.add(hidden)
    found = connector.fetch([hidden, visible])
    assert [task["gid"] for task in found] == [visible]  # the 403 task is out of scope, the rest is read
    assert asana.state.hits("GET", "/users/{user_gid}") == 1  # the token was checked once, and works

    asana.workspace.token = "a-revoked-token"  # now every call, the check included, answers 401
    with pytest.raises(AuthError):
        connector.fetch([hidden])
    assert asana.state.hits("GET", "/users/{user_gid}") == 2


def test_the_limiter_keeps_the_token_under_the_enforced_limit(asana: Asana) -> None:
    asana.workspace.requests_per_minute, asana.workspace.window_seconds = 10, 2.0
    connector = asana.connector(limiter=RateLimiter([(10, 2.1)]))
    started = time.monotonic()
    for _ in range(25):
        connector.fetch(["1203000000000001"])
    assert asana.workspace.violations == 0
    assert time.monotonic() - started >= 4.0  # 25 calls at 10 per 2 s

    # Without the limiter the workspace refuses calls over its limit (429 + Retry-After), and the policy waits.
    unlimited = asana.connector(policy=RetryPolicy(max_attempts=6, base_delay=0.01))
    for _ in range(15):
        unlimited.fetch(["1203000000000001"])
    assert asana.workspace.violations > 0
    assert unlimited.transport.retries == asana.workspace.violations


def test_at_most_50_reads_and_15_writes_in_flight(asana: Asana) -> None:
    connector = asana.connector()
    asana.state.flags.update({"read_delay": 0.2, "write_delay": 0.2})
    score = asana.workspace.field_gid("Marketing score")
    with ThreadPoolExecutor(max_workers=80) as pool:
        reads = [pool.submit(connector.fetch, ["1203000000000001"]) for _ in range(120)]
        writes = [pool.submit(connector.update_item, "1203000000000001",
                              {"data": {"custom_fields": {score: float(n)}}}) for n in range(40)]
        for future in reads + writes:
            future.result()
    assert asana.workspace.violations == 0
    assert asana.workspace.max_reads_in_flight == MAX_READS_IN_FLIGHT
    assert asana.workspace.max_writes_in_flight == MAX_WRITES_IN_FLIGHT


def test_two_sources_on_one_token_share_its_50_reads_in_flight(asana: Asana) -> None:
    first, second = asana.connector(), AsanaConnector(base_url=asana.url, token=DEFAULT_TOKEN,
                                                      projects=[FR_PROJECT], policy=FAST)
    asana.state.flags.update({"read_delay": 0.2})
    with ThreadPoolExecutor(max_workers=90) as pool:
        reads = [pool.submit((first if n % 2 else second).fetch, ["1203000000000001"]) for n in range(140)]
        for future in reads:
            future.result()
    assert asana.workspace.violations == 0  # Asana counts in-flight reads per token, not per source
    assert asana.workspace.max_reads_in_flight == MAX_READS_IN_FLIGHT


def test_writes_and_comments_reach_the_task(asana: Asana) -> None:
    connector = asana.connector()
    context = connector.describe()
    score = next(gid for gid, meta in context["fields"].items() if meta["name"] == "Marketing score")
    connector.update_item("1203000000000001", {"data": {"custom_fields": {score: 31.25}}})
    assert asana.workspace.tasks["1203000000000001"].custom_fields[score] == 31.25
    connector.add_comment("1203000000000001", {"data": {"text": "KPI: 80% of target"}})
    assert asana.workspace.tasks["1203000000000001"].stories[-1]["text"] == "KPI: 80% of target"


def test_recent_comments_are_the_comment_stories_newest_first_across_pages(asana: Asana) -> None:
    connector = asana.connector()
    gid = "1203000000000001"
    assert isinstance(connector, ReadsComments)
    for n in range(3):
        connector.add_comment(gid, {"data": {"text": f"KPI result {n}"}})
    for n in range(120):  # field changes leave system stories: the comments are past the first page of 100
        asana.workspace.set_field(gid, "Reach", 5000 + n, notify=False)
    connector.add_comment(gid, {"data": {"text": "Résultat KPI : en bonne voie"}})
    before = asana.state.counters["GET /tasks/{task_gid}/stories"]
    assert connector.recent_comments(gid, 3) == ["Résultat KPI : en bonne voie", "KPI result 2", "KPI result 1"]
    assert asana.state.counters["GET /tasks/{task_gid}/stories"] - before == 2  # 124 stories, 100 a page
    assert connector.recent_comments(gid, 10)[-1] == "KPI result 0"
    assert connector.recent_comments("1203000000000999", 5) == []  # a task that is gone has none


def test_numbers_are_stored_at_the_field_s_precision_and_a_score_field_too_coarse_is_refused(asana: Asana) -> None:
    fields = asana.connector().describe()["fields"]
    rank = next(gid for gid, meta in fields.items() if meta["name"] == "Marketing rank")
    effort = next(gid for gid, meta in fields.items() if meta["name"] == "Effort")
    assert (fields[rank]["precision"], fields[effort]["precision"]) == (0, 1)
    asana.connector().update_item("1203000000000001", {"data": {"custom_fields": {rank: 12.5, effort: 2.25}}})
    stored = asana.workspace.tasks["1203000000000001"].custom_fields
    assert (stored[rank], stored[effort]) == (13, 2.3)  # as Asana does: rounded to the field's decimal places

    assert asana.connector(score_field="marketing score").describe()  # precision 2: accepted, name folded
    with pytest.raises(FatalError) as refused:
        asana.connector(score_field="Marketing rank").describe()
    message = str(refused.value)
    assert "'Marketing rank'" in message and "precision 0" in message and "write_back.score_field" in message
    assert "2 or more" in message


def test_a_refused_write_is_a_skippable_error_naming_the_call(asana: Asana) -> None:
    from connectors.base import SkippableError

    with pytest.raises(SkippableError, match=r"HTTP 400 on PUT .*/tasks/1203000000000001"):
        asana.connector().update_item("1203000000000001", {"data": {"custom_fields": {"123": 1}}})


def test_the_cursor_is_opaque_json_and_a_bad_one_means_a_full_read(asana: Asana) -> None:
    connector = asana.connector()
    cursor = full_cursor(connector)
    assert set(json.loads(cursor)) == {"projects"}
    listing = asana.state.hits("GET", TASKS)
    list(connector.pull("not json"))
    assert asana.state.hits("GET", TASKS) == listing + 2


def test_concurrent_pulls_share_nothing_but_the_transport(asana: Asana) -> None:
    connector = asana.connector()
    results: list[int] = []
    lock = threading.Lock()

    def pull() -> None:
        count = sum(len(p.records) for p in connector.pull(None))
        with lock:
            results.append(count)

    threads = [threading.Thread(target=pull) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == [len(asana.workspace.tasks)] * 4
