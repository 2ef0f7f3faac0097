"""JiraConnector against the emulated Jira: real HTTP, the real `jira` library, no mocks.

Covers the user's time zone in incremental JQL, the search/jql-only rule, raw-dict pages, id listing and
fetching, Data Center PAT auth, retried faults (503, 429 with Retry-After, a read timeout), write errors and
agile ranking.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import requests

from connectors.base import AuthError, Page, PolicyAdapter, RetryPolicy, SkippableError
from connectors.jira import JiraConnector, jql_lower_bound, parse_jira_time
from sandbox.common import SandboxState, ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_PAT, DEFAULT_TOKEN, JiraSite, create_app

SEARCH = "/rest/api/3/search/jql"
PAGE_SIZE = 10
MKT_ISSUES = 42
POLICY = RetryPolicy(max_attempts=4, base_delay=0.01, max_delay=0.5)


@dataclass
class Sandbox:
    site: JiraSite
    state: SandboxState
    server: ThreadedServer

    @property
    def url(self) -> str:
        return self.server.url

    def mkt_ids(self) -> set[str]:
        with self.site.lock:
            return {str(issue.id) for issue in self.site.issues.values() if issue.project == "MKT"}

    def issue_id(self, key: str) -> str:
        issue = self.site.find(key)
        assert issue is not None, key
        return str(issue.id)

    def connector(self, **overrides: Any) -> JiraConnector:
        kwargs: dict[str, Any] = {
            "base_url": self.url,
            "email": DEFAULT_EMAIL,
            "token": DEFAULT_TOKEN,
            "jql": "project = MKT",
            "page_size": PAGE_SIZE,
            "overlap_minutes": 0,
            "policy": POLICY,
        }
        kwargs.update(overrides)
        return JiraConnector(**kwargs)

    def site_search(self, jql: str) -> set[str]:
        """Runs JQL on the site directly (POST search/jql with basic auth); returns the matching keys."""
        response = requests.post(f"{self.url}{SEARCH}", json={"jql": jql, "fields": ["id"], "maxResults": 5000},
                                 auth=(DEFAULT_EMAIL, DEFAULT_TOKEN), timeout=5)
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["isLast"] is True
        return {issue["key"] for issue in body["issues"]}


@pytest.fixture
def start_jira() -> Iterator[Callable[..., Sandbox]]:
    started: list[ThreadedServer] = []

    def start(**site_kwargs: Any) -> Sandbox:
        site = JiraSite(**site_kwargs)
        app = create_app(site)
        server = ThreadedServer(app)
        site.base_url = server.url
        server.start()
        started.append(server)
        return Sandbox(site=site, state=app.state.sandbox, server=server)

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def jira(start_jira: Callable[..., Sandbox]) -> Sandbox:
    return start_jira()


def drain(pages: Iterator[Page]) -> list[Page]:
    return list(pages)


def keys(pages: list[Page]) -> list[str]:
    return [record["key"] for page in pages for record in page.records]


def adapter_of(connector: JiraConnector, url: str) -> PolicyAdapter:
    adapter = connector._session.get_adapter(url)
    assert isinstance(adapter, PolicyAdapter)
    return adapter


# -- 1. time zones ---------------------------------------------------------------------------------


@pytest.mark.parametrize("zone", ["America/Los_Angeles", "Pacific/Kiritimati"])
def test_incremental_pull_reads_jql_dates_in_the_users_zone(start_jira: Callable[..., Sandbox], zone: str) -> None:
    jira = start_jira(user_time_zone=zone)
    connector = jira.connector()
    try:
        assert connector.describe()["time_zone"] == zone
        full = drain(connector.pull(None, full=True))
        assert len(keys(full)) == MKT_ISSUES
        cursor = full[-1].cursor
        since = parse_jira_time(cursor)
        assert since is not None

        jira.site.advance(120)
        jira.site.set_field("MKT-5", "Reach", 99999)

        changed = drain(connector.pull(cursor))
        changed_keys = keys(changed)
        assert "MKT-5" in changed_keys
        assert set(changed_keys) == {"MKT-5"}, "an incremental pull re-read unchanged issues"
        assert len(changed_keys) < MKT_ISSUES // 4
        record = next(r for page in changed for r in page.records if r["key"] == "MKT-5")
        assert record["fields"]["customfield_10050"] == 99999
        assert parse_jira_time(changed[-1].cursor) > since  # type: ignore[operator]

        # The bound the connector sends, in the user's zone, finds the edit on the site itself ...
        local_bound = jql_lower_bound(since, connector.overlap, ZoneInfo(zone))
        assert "MKT-5" in jira.site_search(f'project = MKT AND updated >= "{local_bound}"')
        # ... and differs from a naive bound written in UTC.
        naive_bound = (since - connector.overlap).astimezone(UTC).strftime("%Y-%m-%d %H:%M")
        assert naive_bound != local_bound
        if zone == "America/Los_Angeles":
            # Jira reads the UTC wall time as Los Angeles time, 7-8 hours later: the edit would be missed.
            assert jira.site_search(f'project = MKT AND updated >= "{naive_bound}"') == set()
    finally:
        connector.close()


# -- 2. only search/jql ----------------------------------------------------------------------------


def test_only_the_search_jql_endpoint_is_used(jira: Sandbox) -> None:
    connector = jira.connector()
    try:
        connector.describe()
        assert len(keys(drain(connector.pull(None, full=True)))) == MKT_ISSUES
        assert set(connector.list_ids()) == jira.mkt_ids()
        assert len(connector.fetch([jira.issue_id("MKT-1")])) == 1
    finally:
        connector.close()
    counters = jira.state.snapshot()["counters"]
    assert counters.get(f"POST {SEARCH}", 0) > 0
    assert not [route for route in counters if route.split(" ", 1)[1] == "/rest/api/3/search"], counters
    assert counters.get(f"GET {SEARCH}", 0) == 0
    assert "410" not in jira.state.snapshot()["statuses"]


# -- 3. raw pages ----------------------------------------------------------------------------------


def test_pages_hold_raw_dicts_of_the_scope_only(jira: Sandbox) -> None:
    connector = jira.connector()
    try:
        pages = drain(connector.pull(None, full=True))
    finally:
        connector.close()
    assert len(pages) >= MKT_ISSUES // PAGE_SIZE
    for page in pages:
        assert len(page.records) <= PAGE_SIZE
        for record in page.records:
            assert type(record) is dict
            assert isinstance(record["fields"], dict) and "updated" in record["fields"]
    all_keys = keys(pages)
    assert len(all_keys) == MKT_ISSUES == len(jira.mkt_ids())
    assert len(set(all_keys)) == MKT_ISSUES
    assert all(key.startswith("MKT-") for key in all_keys)
    assert any(issue.project == "OPS" for issue in jira.site.issues.values())  # there was something to exclude
    assert {record["id"] for page in pages for record in page.records} == jira.mkt_ids()


# -- 4. ids and fetch ------------------------------------------------------------------------------


def test_list_ids_and_fetch(jira: Sandbox) -> None:
    connector = jira.connector()
    try:
        ids = list(connector.list_ids())
        assert len(ids) == len(set(ids))
        assert set(ids) == jira.mkt_ids()
        assert len(ids) == MKT_ISSUES

        deleted = jira.issue_id("MKT-3")
        assert jira.site.delete("MKT-3")
        after = set(connector.list_ids())
        assert deleted not in after
        assert after == jira.mkt_ids()

        wanted = jira.issue_id("MKT-4")
        fetched = connector.fetch([wanted, "999999"])
        assert [record["id"] for record in fetched] == [wanted]
        assert fetched[0]["key"] == "MKT-4"
        assert connector.fetch([deleted]) == []
    finally:
        connector.close()


# -- 5. Data Center auth ---------------------------------------------------------------------------


def test_data_center_personal_access_token(start_jira: Callable[..., Sandbox]) -> None:
    jira = start_jira(deployment="datacenter")
    connector = jira.connector(deployment="datacenter", email=None, token=DEFAULT_PAT)
    try:
        described = connector.describe()
        assert described["deployment_type"] == "Server"
        assert "customfield_10050" in described["fields"]
        pages = drain(connector.pull(None, full=True))
        assert len(keys(pages)) == MKT_ISSUES
        # Data Center has no REST v3: everything went through v2, the issues paged by startAt.
        counters = jira.state.snapshot()["counters"]
        assert counters.get("POST /rest/api/2/search", 0) == len(pages)
        assert not any("/rest/api/3/" in route for route in counters)
        assert all(isinstance(r["fields"]["description"], str | None) for page in pages for r in page.records)
    finally:
        connector.close()

    wrong = jira.connector(deployment="datacenter", email=None, token="not-the-pat")
    try:
        with pytest.raises(AuthError) as raised:
            wrong.describe()
        assert raised.value.status == 401
    finally:
        wrong.close()


# -- 6. faults -------------------------------------------------------------------------------------


def test_two_503s_are_retried(jira: Sandbox) -> None:
    jira.state.inject(route=SEARCH, method="POST", status=503, times=2)
    connector = jira.connector()
    try:
        assert len(keys(drain(connector.pull(None, full=True)))) == MKT_ISSUES
        assert adapter_of(connector, jira.url).retries == 2
    finally:
        connector.close()
    assert jira.state.snapshot()["statuses"].get("503") == 2


def test_429_waits_for_retry_after(jira: Sandbox) -> None:
    jira.state.inject(route=SEARCH, method="POST", status=429, headers={"Retry-After": "0.05"},
                      body={"errorMessages": ["Rate limit exceeded."], "errors": {}}, times=1)
    connector = jira.connector()
    try:
        started = time.monotonic()
        assert len(keys(drain(connector.pull(None, full=True)))) == MKT_ISSUES
        elapsed = time.monotonic() - started
        assert adapter_of(connector, jira.url).retries == 1
    finally:
        connector.close()
    assert jira.state.snapshot()["statuses"].get("429") == 1
    # The policy alone would wait about 0.01 s; Retry-After asks for 0.05 s.
    assert elapsed >= 0.05


def test_slow_answer_times_out_and_is_retried(jira: Sandbox) -> None:
    jira.state.inject(route=SEARCH, method="POST", delay=2.0, times=1)
    connector = jira.connector(timeout=(1.0, 0.5))
    try:
        started = time.monotonic()
        assert len(keys(drain(connector.pull(None, full=True)))) == MKT_ISSUES
        elapsed = time.monotonic() - started
        assert adapter_of(connector, jira.url).retries == 1
    finally:
        connector.close()
    pages = -(-MKT_ISSUES // PAGE_SIZE)
    assert jira.state.hits("POST", SEARCH) == pages + 1  # the timed-out call and its retry
    assert elapsed < 2.0, "the connector waited for the slow answer instead of timing out"


# -- 7. write errors -------------------------------------------------------------------------------


def test_write_errors_are_skippable(jira: Sandbox) -> None:
    connector = jira.connector()
    issue_id = jira.issue_id("MKT-2")
    try:
        with pytest.raises(SkippableError) as unknown_field:
            connector.update_item(issue_id, {"fields": {"customfield_99999": 1}})
        assert "customfield_99999" in str(unknown_field.value)
        assert unknown_field.value.status == 400

        with pytest.raises(SkippableError) as plain_comment:
            connector.add_comment(issue_id, {"body": "text"})
        assert plain_comment.value.status == 400

        # The same calls succeed with a known field and an ADF body.
        connector.update_item(issue_id, {"fields": {"customfield_10050": 1234}})
        connector.add_comment(issue_id, {"body": {"type": "doc", "version": 1, "content": [
            {"type": "paragraph", "content": [{"type": "text", "text": "text"}]}]}})
    finally:
        connector.close()
    issue = jira.site.find("MKT-2")
    assert issue is not None
    assert issue.fields["customfield_10050"] == 1234
    assert "customfield_99999" not in issue.fields
    assert len(issue.comments) == 1


# -- 8. ranking ------------------------------------------------------------------------------------


def lexorank_order(jira: Sandbox, ids: list[str]) -> list[str]:
    with jira.site.lock:
        issues = [jira.site.issues[int(i)] for i in ids]
        return [str(issue.id) for issue in sorted(issues, key=lambda issue: issue.lexorank)]


def test_rank_orders_issues(jira: Sandbox) -> None:
    ordered = [jira.issue_id(key) for key in ("MKT-9", "MKT-2", "MKT-7", "MKT-1", "MKT-5")]
    assert lexorank_order(jira, ordered) != ordered  # the seeded order differs
    connector = jira.connector()
    try:
        assert connector.rank(ordered) == {}
    finally:
        connector.close()
    assert lexorank_order(jira, ordered) == ordered


def test_rank_reports_a_missing_issue(jira: Sandbox) -> None:
    existing = [jira.issue_id(key) for key in ("MKT-8", "MKT-3", "MKT-6")]
    connector = jira.connector()
    try:
        failures = connector.rank([existing[0], "999999", existing[1], existing[2]])
    finally:
        connector.close()
    assert set(failures) == {"999999"}
    assert "does not exist" in failures["999999"]
    assert lexorank_order(jira, existing) == existing
