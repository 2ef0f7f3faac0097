"""GA4Connector against the emulated GA4 property: real HTTP, the real google-analytics-data client, no mocks.

Covers the seeded email-lead series, batching (at most 5 reports a call, one property), offset/limit paging,
typed metric values, the property quota on every call, 429 handling (retried, then QuotaExhausted with the
right retry_after), the reserve, 400/401/403, data freshness and late corrections.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from google.api_core import exceptions as google_errors
from google.auth import jwt as google_jwt
from google.oauth2.credentials import Credentials as TokenCredentials
from requests.adapters import HTTPAdapter

from connectors.base import (
    AuthError,
    ConnectorError,
    FatalError,
    MetricRow,
    PaginationLoopError,
    Paginator,
    RetriableError,
    RetryPolicy,
    SkippableError,
)
from connectors.ga4 import (
    GA4Connector,
    PropertyQuota,
    QuotaExhausted,
    ReportSpec,
    _ReportPages,
    seconds_to_window,
)
from sandbox.common import SandboxState, ThreadedServer
from sandbox.ga4 import PROPERTY_ID, GA4Property, create_app, resource_exhausted
from sandbox.ga4_data import seeded_cube

BATCH = "/v1beta/properties/{property_id}:batchRunReports"
POLICY = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.2)
EMAIL_LEADS = (("eventName", "generate_lead"), ("sessionDefaultChannelGroup", "Email"))
LEAD_DIMS = dict(EMAIL_LEADS)
NOON = datetime(2026, 12, 1, 12, 20, tzinfo=UTC)  # 04:20 in Los Angeles


@dataclass
class FakeClock:
    now: datetime = NOON

    def __call__(self) -> datetime:
        return self.now


@dataclass
class Sandbox:
    ga4: GA4Property
    state: SandboxState
    server: ThreadedServer
    clock: FakeClock = field(default_factory=FakeClock)

    @property
    def url(self) -> str:
        return self.server.url

    def connector(self, **overrides: Any) -> GA4Connector:
        kwargs: dict[str, Any] = {"property_id": PROPERTY_ID, "endpoint": self.url, "anonymous": True,
                                  "policy": POLICY, "clock": self.clock}
        kwargs.update(overrides)
        return GA4Connector(**kwargs)

    def sent(self) -> list[dict[str, Any]]:
        """The batchRunReports bodies the client sent, oldest first."""
        return [r["body"] for r in self.ga4.requests if r["path"].endswith(":batchRunReports")]


@pytest.fixture
def ga4() -> Iterator[Sandbox]:
    clock = FakeClock()  # the connector's and the sandbox's quota windows follow the same clock
    prop = GA4Property(quota_clock=clock)
    state = SandboxState()
    server = ThreadedServer(create_app(prop, sandbox=state)).start()
    sandbox = Sandbox(prop, state, server, clock)
    yield sandbox
    server.stop()


def leads(start: date, end: date) -> ReportSpec:
    return ReportSpec(metrics=("eventCount",), start_date=start, end_date=end, filters=EMAIL_LEADS)


def by_day(rows: list[MetricRow], metric: str = "eventCount") -> dict[date, float | int]:
    return {datetime.strptime(row.dimensions["date"], "%Y%m%d").date(): row.metrics[metric] for row in rows}


def test_the_real_client_reads_the_seeded_email_leads(ga4: Sandbox) -> None:
    # Worked out from the agreed design, not from the sandbox: 2025 is 40 + a weekly pattern (Mon..Sun).
    weekly = (6, 4, 2, 0, -2, -6, -4)
    growth = {1: 1.12, 2: 1.05, 3: 1.28, 4: 1.46}
    with ga4.connector() as connector:
        year_2025, autumn_2026 = connector.run_reports([leads(date(2025, 1, 1), date(2025, 12, 31)),
                                                        leads(date(2026, 9, 25), date(2026, 10, 5))])
    values = by_day(year_2025)
    assert len(values) == 365
    assert values[date(2025, 1, 6)] == 46  # a Monday
    assert values[date(2025, 1, 12)] == 36  # a Sunday
    assert all(values[day] == 40 + weekly[day.weekday()] for day in values)
    assert sum(values.values()) == 52 * 280 + 42  # 52 whole weeks and Wednesday, January 1st
    assert all(isinstance(v, int) for v in values.values())
    autumn = by_day(autumn_2026)
    assert autumn[date(2026, 9, 30)] == round((40 + weekly[date(2025, 9, 30).weekday()]) * growth[3])
    assert autumn[date(2026, 10, 1)] == round((40 + weekly[date(2025, 10, 1).weekday()]) * growth[4])
    assert autumn[date(2026, 10, 1)] == 61  # 2025-10-01 was a Wednesday: 42 * 1.46 = 61.32
    assert ga4.state.hits("POST", BATCH) == 1


def test_reports_go_out_in_batches_of_at_most_five_for_one_property(ga4: Sandbox) -> None:
    specs = [leads(date(2026, month, 1), date(2026, month, 28)) for month in range(1, 12)]
    with ga4.connector() as connector:
        results = connector.run_reports(specs)
        assert connector.calls == 3  # 5 + 5 + 1
    assert [len(body["requests"]) for body in ga4.sent()] == [5, 5, 1]
    assert {r["property"] for body in ga4.sent() for r in body["requests"]} == {f"properties/{PROPERTY_ID}"}
    assert all(r["returnPropertyQuota"] is True for body in ga4.sent() for r in body["requests"])
    # results come back in the order of the specs
    for month, rows in enumerate(results, start=1):
        assert len(rows) == 28
        assert rows[0].dimensions["date"] == f"2026{month:02d}01"
        assert rows[0].metrics["eventCount"] == ga4.ga4.value(date(2026, month, 1), LEAD_DIMS, "eventCount")


def test_offset_paging_reads_every_row_while_row_count_says_more(ga4: Sandbox) -> None:
    spec = ReportSpec(metrics=("sessions",), start_date=date(2026, 10, 1), end_date=date(2026, 10, 30),
                      dimensions=("date", "landingPage"))
    with ga4.connector(page_size=1000) as connector:
        (whole,) = connector.run_reports([spec])
    ga4.ga4.requests.clear()
    with ga4.connector(page_size=70) as connector:
        (paged,) = connector.run_reports([spec])
        # 240 rows: the first page tells the rowCount, then the 3 other pages go out in one batch
        assert connector.calls == 2
    assert len(whole) == 30 * 8
    assert paged == whole
    assert len({(r.dimensions["date"], r.dimensions["landingPage"]) for r in paged}) == 240
    offsets = [r.get("offset", "0") for body in ga4.sent() for r in body["requests"]]
    assert offsets == ["0", "70", "140", "210"]  # int64 travels as a string
    assert {r["limit"] for body in ga4.sent() for r in body["requests"]} == {"70"}


def test_pages_of_several_reports_share_batches(ga4: Sandbox) -> None:
    specs = [ReportSpec(metrics=("eventCount",), start_date=date(2026, 11, 1), end_date=date(2026, 11, 5),
                        dimensions=("date", "eventName"), filters=(("sessionDefaultChannelGroup", channel),))
             for channel in ("Organic Search", "Direct", "Paid Search", "Email", "Organic Social", "Referral",
                             "Paid Social")]
    with ga4.connector(page_size=12) as connector:
        results = connector.run_reports(specs)  # 20 rows each: 2 pages each, 14 requests
        assert connector.calls == 3
    batches = [[(r["dimensionFilter"]["filter"]["stringFilter"]["value"], r.get("offset", "0"))
                for r in body["requests"]] for body in ga4.sent()]
    assert [len(batch) for batch in batches] == [5, 5, 4]
    assert batches[1][:3] == [("Referral", "0"), ("Paid Social", "0"), ("Organic Search", "12")]
    assert all(len(rows) == 20 for rows in results)
    for spec, rows in zip(specs, results, strict=True):
        channel = spec.filters[0][1]
        assert sum(row.metrics["eventCount"] for row in rows) == sum(
            ga4.ga4.value(date(2026, 11, d), {"sessionDefaultChannelGroup": channel}, "eventCount")
            for d in range(1, 6))


def test_a_row_count_that_never_arrives_stops_as_a_pagination_loop(ga4: Sandbox) -> None:
    ga4.state.flags["row_count_bonus"] = 3
    with ga4.connector(page_size=10) as connector, pytest.raises(PaginationLoopError, match="offset 30 is empty"):
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 28))])


def test_page_bookkeeping_fills_short_pages_and_follows_a_changing_row_count() -> None:
    def rows(n: int, start: int) -> list[MetricRow]:
        return [MetricRow(dimensions={"n": str(start + k)}, metrics={}) for k in range(n)]

    pages = _ReportPages(Paginator("ga4"))
    pages.ask(0)
    pages.receive(0, rows(10, 0), 35)
    assert pages.gaps(10) == [10, 20, 30]
    for offset in (10, 20, 30):
        pages.ask(offset)
    pages.receive(10, rows(7, 10), 35)  # a short page in the middle
    pages.receive(30, rows(5, 30), 42)  # meanwhile GA4 found more rows
    assert pages.gaps(10) == [17, 35]
    assert not pages.finished(10)
    pages.receive(20, rows(10, 20), 42)
    assert pages.gaps(10) == [17, 35]  # 17..19 is still missing
    with pytest.raises(PaginationLoopError):
        pages.ask(30)  # an offset asked for twice
    pages.ask(17)
    pages.ask(35)
    pages.receive(17, rows(10, 17), 42)
    pages.receive(35, rows(7, 35), 42)
    assert pages.finished(10)
    assert [row.dimensions["n"] for row in pages.ordered()] == [str(n) for n in range(42)]


def test_metric_values_are_typed_from_the_metric_headers(ga4: Sandbox) -> None:
    spec = ReportSpec(metrics=("sessions", "engagementRate", "userEngagementDuration", "averageSessionDuration"),
                      start_date=date(2026, 11, 2), end_date=date(2026, 11, 2), dimensions=("date",))
    with ga4.connector() as connector:
        ((row,),) = connector.run_reports([spec])
    assert type(row.metrics["sessions"]) is int
    assert type(row.metrics["engagementRate"]) is float  # TYPE_FLOAT
    assert type(row.metrics["userEngagementDuration"]) is float  # TYPE_SECONDS
    assert 0 < row.metrics["engagementRate"] < 1
    assert row.metrics["averageSessionDuration"] == pytest.approx(
        row.metrics["userEngagementDuration"] / row.metrics["sessions"], rel=1e-6)
    # the client asked for enums as numbers, and the sandbox answered with numbers
    assert "enum-encoding%3Dint" in ga4.ga4.requests[-1]["query"]


def test_an_unreadable_metric_value_is_an_error_that_names_it(ga4: Sandbox) -> None:
    odd = {"reports": [{
        "dimensionHeaders": [{"name": "date"}], "metricHeaders": [{"name": "eventCount", "type": 1}],
        "rows": [{"dimensionValues": [{"value": "20261101"}], "metricValues": [{"value": "41"}]},
                 {"dimensionValues": [{"value": "20261102"}], "metricValues": [{"value": "n/a"}]}],
        "rowCount": 2, "kind": "analyticsData#runReport"}], "kind": "analyticsData#batchRunReports"}
    ga4.state.inject(route=BATCH, status=200, body=odd)
    with ga4.connector() as connector, pytest.raises(FatalError) as caught:
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    assert "eventCount = 'n/a' is not a number" in str(caught.value)
    assert "20261102" in str(caught.value)
    odd["reports"][0]["rows"][1]["metricValues"][0]["value"] = "12.5"  # a fraction for a TYPE_INTEGER metric
    ga4.state.inject(route=BATCH, status=200, body=odd)
    with ga4.connector() as connector, pytest.raises(FatalError, match="eventCount = '12.5' is not a number"):
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    odd["reports"][0]["rows"][1]["metricValues"][0]["value"] = "12.0"
    ga4.state.inject(route=BATCH, status=200, body=odd)
    with ga4.connector() as connector:
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    assert [row.metrics["eventCount"] for row in rows] == [41, 12]


def test_every_call_returns_the_property_quota(ga4: Sandbox) -> None:
    with ga4.connector(page_size=100) as connector:
        # 181 days, 2 pages; each page costs 1 token plus 1 per 90 days: 3
        connector.run_reports([leads(date(2026, 1, 1), date(2026, 6, 30))])
        assert connector.calls == 2
        assert ga4.ga4.consumed()["tokensPerHour"] == 6
        assert connector.quota == PropertyQuota(
            tokens_per_day_remaining=200_000 - 6, tokens_per_hour_remaining=40_000 - 6,
            tokens_per_project_per_hour_remaining=14_000 - 6, concurrent_requests_remaining=10)


def test_a_429_is_retried_by_the_one_policy_then_succeeds(ga4: Sandbox) -> None:
    ga4.state.inject(route=BATCH, status=429, body=resource_exhausted("Exhausted concurrent requests quota."))
    with ga4.connector() as connector:
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
        assert connector.retries == 1
        assert connector.calls == 1
    assert len(rows) == 7
    assert ga4.state.hits("POST", BATCH) == 2


def test_a_lasting_429_becomes_quota_exhausted_until_the_next_hour(ga4: Sandbox) -> None:
    ga4.state.inject(route=BATCH, status=429, body=resource_exhausted("Exhausted property tokens per hour."),
                     times=-1)
    connector = ga4.connector()
    with pytest.raises(QuotaExhausted) as caught:
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
    assert caught.value.retry_after == pytest.approx(40 * 60)  # 12:20 UTC -> 13:00
    assert "tokens per hour" in str(caught.value)
    # the adapter's typed error came through the REST transport and the client untouched (not a GoogleAPICallError)
    assert type(caught.value.__cause__) is RetriableError and caught.value.__cause__.status == 429
    assert ga4.state.hits("POST", BATCH) == POLICY.max_attempts
    # the same connector does not call again before the hour turns
    ga4.clock.now += timedelta(minutes=10)
    with pytest.raises(QuotaExhausted) as again:
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
    assert again.value.retry_after == pytest.approx(30 * 60)
    assert ga4.state.hits("POST", BATCH) == POLICY.max_attempts
    ga4.state.clear_faults()
    ga4.clock.now += timedelta(minutes=31)
    (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
    assert len(rows) == 7
    connector.close()


def test_a_daily_quota_waits_for_midnight_pacific_and_retry_after_wins(ga4: Sandbox) -> None:
    ga4.ga4.set_quota_budget(tokens_per_day=3)
    # An emulated budget far under GA4's standard limits: the connector is told not to assume those.
    with ga4.connector(quota_floor={}) as connector:
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
        connector.run_reports([leads(date(2026, 11, 3), date(2026, 11, 4))])
        with pytest.raises(QuotaExhausted) as caught:
            connector.run_reports([leads(date(2026, 11, 5), date(2026, 11, 6))] * 2)
    # 12:20 UTC is 04:20 in Los Angeles (PST): the daily quota resets in 19 h 40 min
    assert caught.value.retry_after == pytest.approx(19 * 3600 + 40 * 60)
    assert ga4.ga4.consumed()["tokensPerDay"] == 2  # the refused batch consumed nothing

    ga4.state.inject(route=BATCH, status=429, body=resource_exhausted(), headers={"Retry-After": "120"})
    with ga4.connector(policy=RetryPolicy(max_attempts=1)) as connector:
        with pytest.raises(QuotaExhausted) as told:
            connector.run_reports([leads(date(2026, 11, 5), date(2026, 11, 6))])
    assert told.value.retry_after == 120


def test_the_reserve_pauses_before_the_budget_is_spent(ga4: Sandbox) -> None:
    ga4.ga4.set_quota_budget(tokens_per_hour=40)
    # An emulated budget far under GA4's standard limits: the connector is told not to assume those.
    with ga4.connector(reserve_fraction=0.1, quota_floor={}) as connector:
        for week in range(35):  # 1 token each
            connector.run_reports([leads(date(2026, 1, 1) + timedelta(weeks=week),
                                         date(2026, 1, 7) + timedelta(weeks=week))])
        assert connector.quota is not None and connector.quota.tokens_per_hour_remaining == 5
        (rows,) = connector.run_reports([leads(date(2026, 10, 1), date(2026, 10, 7))])  # 4 left: under 10 %
        assert len(rows) == 7  # the call that crossed the reserve still returns its rows
        calls = ga4.state.hits("POST", BATCH)
        with pytest.raises(QuotaExhausted) as caught:
            connector.run_reports([leads(date(2026, 10, 8), date(2026, 10, 14))])
        assert ga4.state.hits("POST", BATCH) == calls  # refused without calling
        assert caught.value.retry_after == pytest.approx(40 * 60)
        assert caught.value.completed == {}
        ga4.ga4.new_hour()
        ga4.clock.now = datetime(2026, 12, 1, 13, 0, 5, tzinfo=UTC)
        (rows,) = connector.run_reports([leads(date(2026, 10, 8), date(2026, 10, 14))])
        assert len(rows) == 7
        assert connector.quota.tokens_per_hour_remaining == 39


def test_a_process_that_starts_when_the_quota_is_low_keeps_the_standard_reserve(ga4: Sandbox) -> None:
    # A standard property (40,000 tokens an hour) of which other clients already spent 38,500: 1,500 remain,
    # under 5 % of the hour's 40,000 (2,000). GA4 reports only this request's consumption, so remaining +
    # consumed (1,500) alone would set the reserve at 75 tokens and spend the rest.
    ga4.ga4.spend_tokens(38_500, quotas=("tokensPerHour", "tokensPerDay"))  # clients of other projects
    with ga4.connector() as connector:
        (rows,) = connector.run_reports([leads(date(2026, 10, 1), date(2026, 10, 7))])  # 1 token
        assert len(rows) == 7 and connector.quota is not None
        assert connector.quota.tokens_per_hour_remaining == 1_499
        calls = ga4.state.hits("POST", BATCH)
        with pytest.raises(QuotaExhausted) as caught:
            connector.run_reports([leads(date(2026, 10, 8), date(2026, 10, 14))])
        assert ga4.state.hits("POST", BATCH) == calls  # refused without calling
        assert caught.value.retry_after == pytest.approx(40 * 60)  # 12:20 UTC: the hour turns at 13:00
    # Without the floor, the budget is estimated from what this process saw and the reserve shrinks with it.
    with ga4.connector(quota_floor={}) as unfloored:
        for week in range(3):
            unfloored.run_reports([leads(date(2026, 1, 1) + timedelta(weeks=week),
                                         date(2026, 1, 7) + timedelta(weeks=week))])
    assert ga4.state.hits("POST", BATCH) == calls + 3


def test_the_concurrent_requests_quota_asks_for_a_short_wait(ga4: Sandbox) -> None:
    ga4.ga4.set_quota_budget(concurrent_requests=0)
    with ga4.connector() as connector:
        with pytest.raises(QuotaExhausted, match="concurrent") as caught:
            connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
        assert caught.value.retry_after == 10
        ga4.ga4.set_quota_budget(concurrent_requests=10)
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])  # no long pause
    assert len(rows) == 7


def test_quota_exhausted_mid_run_keeps_the_reports_already_complete(ga4: Sandbox) -> None:
    ga4.ga4.set_quota_budget(tokens_per_hour=6)
    specs = [leads(date(2026, month, 1), date(2026, month, 28)) for month in range(1, 10)]  # 1 token each
    with ga4.connector(reserve_fraction=0) as connector, pytest.raises(QuotaExhausted) as caught:
        connector.run_reports(specs)
    # the first batch (5 reports) fitted in the budget; the second (4 tokens, 1 left) was refused
    assert sorted(caught.value.completed) == [0, 1, 2, 3, 4]
    assert by_day(caught.value.completed[2]) == {date(2026, 3, d): ga4.ga4.value(date(2026, 3, d), LEAD_DIMS,
                                                                                  "eventCount")
                                                 for d in range(1, 29)}


def test_too_many_requests_from_the_library_is_quota_exhausted_too(ga4: Sandbox) -> None:
    """If a 429 reaches the library (here: the session's adapter swapped for a plain one), google.api_core
    raises TooManyRequests, which the connector translates the same way."""
    assert issubclass(google_errors.ResourceExhausted, google_errors.TooManyRequests)
    ga4.state.inject(route=BATCH, status=429, body=resource_exhausted("Exhausted property tokens per day."),
                     headers={"Retry-After": "90"})
    connector = ga4.connector()
    connector._client.transport._session.mount("http://", HTTPAdapter(max_retries=0))
    with pytest.raises(QuotaExhausted) as caught:
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
    assert caught.value.retry_after == 90
    assert isinstance(caught.value.__cause__, google_errors.TooManyRequests)
    connector.close()


@pytest.mark.parametrize(("status", "reason", "typed"), [
    (403, "PERMISSION_DENIED", AuthError), (409, "ABORTED", RetriableError),
    (422, "FAILED_PRECONDITION", SkippableError), (500, "INTERNAL", RetriableError),
    (503, "UNAVAILABLE", RetriableError), (404, "NOT_FOUND", FatalError), (400, "INVALID_ARGUMENT", FatalError),
    (429, "RESOURCE_EXHAUSTED", QuotaExhausted),
])
def test_the_librarys_exceptions_are_typed_by_the_one_status_table(ga4: Sandbox, status: int, reason: str,
                                                                    typed: type[Exception]) -> None:
    """A status that reaches google.api_core (here: the session's adapter swapped for a plain one) is typed by
    connectors.base's table; only 429 (QuotaExhausted), 400 (the field named) and 404 (the property) differ."""
    message = "Field leadz is not a valid metric." if status == 400 else f"{reason.lower()} from GA4"
    ga4.state.inject(route=BATCH, status=status, body={"error": {"code": status, "message": message,
                                                                 "status": reason}})
    connector = ga4.connector()
    connector._client.transport._session.mount("http://", HTTPAdapter(max_retries=0))
    spec = ReportSpec(metrics=("eventCount", "leadz"), start_date=date(2026, 11, 1), end_date=date(2026, 11, 2))
    with pytest.raises(ConnectorError) as caught:
        connector.run_reports([spec])
    connector.close()
    assert type(caught.value) is typed, caught.value
    assert caught.value.status == status and caught.value.vendor == "ga4"
    assert isinstance(caught.value.__cause__, google_errors.GoogleAPICallError)
    if status == 400:
        assert "the report's leadz" in str(caught.value)
    elif status not in (404, 429):
        assert f"HTTP {status} on batchRunReports properties/{PROPERTY_ID}" in str(caught.value)


def test_a_server_error_is_retried(ga4: Sandbox) -> None:
    ga4.state.inject(route=BATCH, status=503, body={"error": {"code": 503, "message": "The service is currently "
                                                              "unavailable.", "status": "UNAVAILABLE"}}, times=2)
    with ga4.connector() as connector:
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 7))])
        assert connector.retries == 2
    assert len(rows) == 7


@pytest.mark.parametrize(("spec", "named"), [
    (ReportSpec(metrics=("eventCount", "leadz"), start_date=date(2026, 11, 1), end_date=date(2026, 11, 2)),
     "leadz"),
    (ReportSpec(metrics=("eventCount",), start_date=date(2026, 11, 1), end_date=date(2026, 11, 2),
                dimensions=("date", "campaign")), "campaign"),
])
def test_an_unknown_metric_or_dimension_is_fatal_and_named(ga4: Sandbox, spec: ReportSpec, named: str) -> None:
    with ga4.connector() as connector, pytest.raises(FatalError) as caught:
        connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2)), spec])
    assert not isinstance(caught.value, AuthError | QuotaExhausted)
    assert f"the report's {named}" in str(caught.value)
    assert caught.value.status == 400


def test_credentials_refused_or_a_foreign_property_are_auth_errors(ga4: Sandbox) -> None:
    ga4.ga4.token = "sandbox-ga4-token"
    with ga4.connector() as anonymous, pytest.raises(AuthError) as caught:
        anonymous.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    assert caught.value.status == 401
    with ga4.connector(anonymous=False, credentials=TokenCredentials("sandbox-ga4-token")) as connector:
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
        assert len(rows) == 2
        assert ga4.ga4.requests[-1]["headers"]["authorization"] == "Bearer sandbox-ga4-token"
        with GA4Connector(property_id="987654321", endpoint=ga4.url, credentials=TokenCredentials(
                "sandbox-ga4-token"), policy=POLICY) as other, pytest.raises(AuthError) as forbidden:
            other.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    assert forbidden.value.status == 403


def service_account_key(tmp_path: Path, name: str = "key.json") -> tuple[Path, str, str]:
    """A service-account key file like the one GCP issues; returns (path, client email, public key PEM)."""
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    email = "backlog-sync@marketing-ops.iam.gserviceaccount.com"
    info = {
        "type": "service_account", "project_id": "marketing-ops", "private_key_id": "0a1b2c3d",
        "private_key": key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()).decode(),
        "client_email": email, "client_id": "104680031962111111111",
        # never called: the client signs its own JWT for the Data API (a call here would fail: nothing listens)
        "token_uri": "http://127.0.0.1:9/token",
        "universe_domain": "googleapis.com",
    }
    path = tmp_path / name
    path.write_text(json.dumps(info))
    public = key.public_key().public_bytes(serialization.Encoding.PEM,
                                           serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return path, email, public


def test_a_service_account_key_file_authenticates(ga4: Sandbox, tmp_path: Path) -> None:
    path, email, public = service_account_key(tmp_path)
    ga4.ga4.add_service_account(email, public)
    with ga4.connector(anonymous=False, credentials_file=path) as connector:
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
        (more,) = connector.run_reports([leads(date(2026, 11, 3), date(2026, 11, 4))])
    assert len(rows) == len(more) == 2
    bearer = ga4.ga4.requests[-1]["headers"]["authorization"].removeprefix("Bearer ")
    claims = google_jwt.decode(bearer, certs=public)
    assert claims["iss"] == email
    assert claims["scope"] == "https://www.googleapis.com/auth/analytics.readonly"

    other, _, _ = service_account_key(tmp_path, "other.json")  # same email, a key the property does not know
    with ga4.connector(anonymous=False, credentials_file=other) as stranger, pytest.raises(AuthError) as caught:
        stranger.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    assert caught.value.status == 401


def test_application_default_credentials_are_used_when_no_key_file_is_given(
        ga4: Sandbox, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path, email, public = service_account_key(tmp_path)
    ga4.ga4.add_service_account(email, public)
    monkeypatch.setenv("GOOGLE_APPLICATION_CREDENTIALS", str(path))  # the first place ADC looks
    with ga4.connector(anonymous=False) as connector:
        (rows,) = connector.run_reports([leads(date(2026, 11, 1), date(2026, 11, 2))])
    assert len(rows) == 2
    bearer = ga4.ga4.requests[-1]["headers"]["authorization"].removeprefix("Bearer ")
    assert google_jwt.decode(bearer, certs=public)["iss"] == email


def test_bad_configuration_is_refused_before_any_call(tmp_path: Path) -> None:
    with pytest.raises(FatalError, match="not a GA4 property id"):
        GA4Connector(property_id="UA-1234-1", anonymous=True)
    with pytest.raises(FatalError, match="not a URL"):
        GA4Connector(property_id="123", anonymous=True, endpoint="127.0.0.1:8084")
    broken = tmp_path / "service-account.json"
    broken.write_text('{"type": "service_account"}')
    with pytest.raises(AuthError, match="service-account file"):
        GA4Connector(property_id="123", credentials_file=broken)
    with pytest.raises(AuthError, match="service-account file"):
        GA4Connector(property_id="123", credentials_file=tmp_path / "missing.json")
    connector = GA4Connector(property_id="properties/123", anonymous=True, endpoint="http://127.0.0.1:9")
    with pytest.raises(FatalError, match="after its end"):
        connector.run_reports([leads(date(2026, 2, 1), date(2026, 1, 1))])
    assert connector.calls == 0


def test_the_last_two_days_are_partial_and_final_once_the_clock_moves(ga4: Sandbox) -> None:
    today = ga4.ga4.today
    days = [today - timedelta(days=n) for n in (3, 2, 1, 0)]
    final = {day: ga4.ga4.value(day, LEAD_DIMS, "eventCount") for day in days}
    with ga4.connector() as connector:
        (rows,) = connector.run_reports([leads(days[0], today + timedelta(days=2))])
        seen = by_day(rows)
        assert set(seen) == set(days)  # nothing for days still to come
        assert seen[days[0]] == final[days[0]] and seen[days[1]] == final[days[1]]
        assert seen[days[2]] == round(final[days[2]] * 0.9)
        assert seen[today] == round(final[today] * 0.6)
        ga4.ga4.advance(2)
        (rows,) = connector.run_reports([leads(days[0], today)])
        assert by_day(rows) == final


def test_a_late_correction_shows_in_the_next_read(ga4: Sandbox) -> None:
    day = ga4.ga4.today - timedelta(days=5)
    before = ga4.ga4.value(day, LEAD_DIMS, "eventCount")
    ga4.ga4.set_value(day, LEAD_DIMS, "eventCount", before + 7)
    with ga4.connector() as connector:
        (rows,) = connector.run_reports([leads(day, day)])
        (pages,) = connector.run_reports([ReportSpec(metrics=("eventCount",), start_date=day, end_date=day,
                                                     dimensions=("landingPage",), filters=EMAIL_LEADS)])
    assert by_day(rows) == {day: before + 7}
    assert sum(row.metrics["eventCount"] for row in pages) == before + 7  # spread over the pages


def test_quota_windows_roll_on_the_hour_and_at_midnight_pacific() -> None:
    # winter (PST, UTC-8) and summer (PDT, UTC-7)
    assert seconds_to_window("hour", datetime(2026, 1, 10, 9, 59, 30, tzinfo=UTC)) == 30
    assert seconds_to_window("day", datetime(2026, 1, 10, 7, 0, tzinfo=UTC)) == 3600
    assert seconds_to_window("day", datetime(2026, 7, 10, 7, 0, tzinfo=UTC)) == 24 * 3600
    assert seconds_to_window("day", datetime(2026, 7, 10, 6, 30, tzinfo=UTC)) == 30 * 60


def test_the_connector_uses_the_project_http_policy(ga4: Sandbox) -> None:
    from connectors.base import PolicyAdapter

    with ga4.connector() as connector:
        session: requests.Session = connector._client.transport._session
        assert isinstance(session.get_adapter(ga4.url), PolicyAdapter)
        assert isinstance(session.get_adapter("https://analyticsdata.googleapis.com"), PolicyAdapter)



def test_other_series_have_channels_events_pages_trend_weekly_seasonality_and_fixed_noise(ga4: Sandbox) -> None:
    by_channel_event = ReportSpec(metrics=("eventCount",), start_date=date(2026, 11, 1), end_date=date(2026, 11, 1),
                                  dimensions=("sessionDefaultChannelGroup", "eventName"))
    pages = ReportSpec(metrics=("activeUsers",), start_date=date(2026, 11, 1), end_date=date(2026, 11, 28),
                       dimensions=("landingPage",))
    organic = (("eventName", "page_view"), ("sessionDefaultChannelGroup", "Organic Search"))
    weeks_2025 = ReportSpec(metrics=("eventCount",), start_date=date(2025, 1, 6), end_date=date(2025, 3, 2),
                            filters=organic)
    weeks_2026 = ReportSpec(metrics=("eventCount",), start_date=date(2026, 1, 5), end_date=date(2026, 3, 1),
                            filters=organic)
    with ga4.connector() as connector:
        combos, landing, early, later = connector.run_reports([by_channel_event, pages, weeks_2025, weeks_2026])
    assert len(combos) == 7 * 4
    assert {row.dimensions["eventName"] for row in combos} == {"page_view", "session_start", "form_start",
                                                               "generate_lead"}
    assert {"/landing/spring-sale", "/blog/seo-checklist", "/newsletter"} <= {r.dimensions["landingPage"]
                                                                               for r in landing}
    assert all(row.metrics["activeUsers"] > 0 for row in landing)
    # trend: the same eight weeks (Monday to Sunday) a year later are about 25 % higher
    growth = sum(r.metrics["eventCount"] for r in later) / sum(r.metrics["eventCount"] for r in early)
    assert 1.18 < growth < 1.32
    # weekly seasonality: Tuesdays are well above Saturdays
    values = by_day(early)
    tuesdays = [v for d, v in values.items() if d.weekday() == 1]
    saturdays = [v for d, v in values.items() if d.weekday() == 5]
    assert sum(tuesdays) / len(tuesdays) > 1.15 * sum(saturdays) / len(saturdays)
    # noise: the same weekday differs from week to week, by a few per cent only
    assert len(set(tuesdays)) > 1
    assert max(tuesdays) / min(tuesdays) < 1.25
    # and it is fixed: the data computed afresh (not the process's cached copy) holds the same numbers
    afresh = seeded_cube.__wrapped__()
    assert afresh is not seeded_cube()
    assert afresh[date(2025, 1, 7)] == seeded_cube()[date(2025, 1, 7)]
    assert afresh[date(2026, 11, 30)] == seeded_cube()[date(2026, 11, 30)]


def test_the_sandbox_is_controlled_over_http_too(ga4: Sandbox) -> None:
    day = ga4.ga4.today
    assert requests.post(f"{ga4.url}/_sandbox/ga4/value", json={"date": day.isoformat(), "dims": LEAD_DIMS,
                                                               "metric": "eventCount", "value": 100},
                         timeout=5).json() == {"ok": True, "value": 100}
    with ga4.connector() as connector:
        assert by_day(connector.run_reports([leads(day, day)])[0]) == {day: 60}  # today: 60 % processed
        requests.post(f"{ga4.url}/_sandbox/ga4/clock", json={"advance_days": 2}, timeout=5).raise_for_status()
        assert by_day(connector.run_reports([leads(day, day)])[0]) == {day: 100}
    requests.post(f"{ga4.url}/_sandbox/ga4/quota", json={"tokens_per_hour": 2}, timeout=5).raise_for_status()
    state = requests.get(f"{ga4.url}/_sandbox/ga4", timeout=5).json()
    assert state["today"] == (day + timedelta(days=2)).isoformat()
    assert state["budget"]["tokensPerHour"] == 2 and state["consumed"]["tokensPerHour"] == 2
    bad = requests.post(f"{ga4.url}/_sandbox/ga4/value", json={"date": "2026-13-01", "metric": "eventCount",
                                                              "value": 1}, timeout=5)
    assert bad.status_code == 400 and "month" in bad.json()["error"]
