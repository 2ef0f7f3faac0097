"""GA4 connector on `google-analytics-data` (BetaAnalyticsDataClient, REST transport): daily metric reports,
batched and paged, with the property's token quota watched on every call.

Reports go out through batchRunReports, at most 5 a call, all for the one property; each asks
returnPropertyQuota, is ordered by its dimensions (so offset paging is stable) and is paged by offset/limit
while rowCount says more rows exist: once the first page has told the rowCount, the remaining pages go out
together, 5 a call. GA4 sends every metric value as a string: values are typed from the
report's metricHeaders (TYPE_INTEGER -> int, every other type -> float).

One HTTP policy: the REST transport talks through a google-auth AuthorizedSession (a requests.Session);
`make_session` equips it with the project's adapter (timeouts, limiter, retries honouring Retry-After, typed
errors, call metrics), and the client's own retry is turned off (retry=None), so there is one retry loop. A 429
therefore reaches us as the adapter's RetriableError once its retries are spent; the client's TooManyRequests /
ResourceExhausted (what google.api_core makes of a 429 it is handed) are translated too. Any other status the
library raises as a GoogleAPICallError is typed by its HTTP code through connectors.base's one status table
(error_for_status). No call bypasses the library.

Credentials: a service-account key file (the client signs its own JWT with the key, scoped to
analytics.readonly, so no token exchange takes place), application default credentials, or anonymous (the
sandbox). google-auth's own token session, used when credentials must be exchanged or refreshed (ADC user
credentials, for instance), is equipped with the same policy. A 401 raises AuthError at once: credentials are
refreshed before they expire, so a 401 means they are wrong, not stale.

Quota. After each call the latest PropertyQuota is kept. When the property's tokens per day, per hour or per
project per hour fall under `reserve_fraction` of what the property had (the largest remaining + consumed
seen), or GA4 answers 429 RESOURCE_EXHAUSTED, the connector raises QuotaExhausted with retry_after = the
Retry-After GA4 gave, else the seconds to the next window: the next hour for hourly quotas, the next midnight
in Pacific time (when GA4 resets daily quotas) for the daily one. Until then the same connector refuses to call.
"""

from __future__ import annotations

import logging
import re
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as day_time
from pathlib import Path
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import google.auth
import google.auth.exceptions
from google.analytics.data_v1beta import BetaAnalyticsDataClient
from google.analytics.data_v1beta.types import (
    BatchRunReportsRequest,
    DateRange,
    Dimension,
    Filter,
    FilterExpression,
    FilterExpressionList,
    Metric,
    MetricType,
    OrderBy,
    RunReportRequest,
    RunReportResponse,
)
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials, Credentials
from google.oauth2 import service_account

from connectors.base import (
    DEFAULT_TIMEOUT,
    AuthError,
    FatalError,
    MetricRow,
    PaginationLoopError,
    Paginator,
    RateLimiter,
    RetriableError,
    RetryPolicy,
    error_for_status,
    make_session,
    parse_retry_after,
)

log = logging.getLogger("backlog_sync.connectors.ga4")

VENDOR = "ga4"
SCOPES = ("https://www.googleapis.com/auth/analytics.readonly",)
MAX_BATCH = 5  # batchRunReports takes at most 5 report requests
MAX_PAGE = 250_000  # GA4 returns at most 250,000 rows a report
QUOTA_TIME_ZONE = ZoneInfo("America/Los_Angeles")  # GA4 resets daily quotas at midnight Pacific time
CONCURRENCY_WAIT = 10.0  # seconds to wait when only the concurrent-requests quota refused
_PROPERTY = re.compile(r"^(?:properties/)?(\d+)$")


@dataclass(frozen=True)
class ReportSpec:
    """One report: metrics by dimensions over an inclusive date range, with exact-match dimension filters."""

    metrics: tuple[str, ...]  # e.g. ("eventCount",), ("activeUsers",)
    start_date: date
    end_date: date  # inclusive, like GA4's dateRanges
    dimensions: tuple[str, ...] = ("date",)  # "date" comes back as "YYYYMMDD"; rows keep it so
    filters: tuple[tuple[str, str], ...] = ()  # (dimension, exact string value) pairs, ANDed (andGroup)


@dataclass(frozen=True)
class PropertyQuota:
    """The property's quota state after the latest call (returnPropertyQuota); None where GA4 said nothing."""

    tokens_per_day_remaining: int | None
    tokens_per_hour_remaining: int | None
    tokens_per_project_per_hour_remaining: int | None
    concurrent_requests_remaining: int | None


class QuotaExhausted(RetriableError):
    """GA4 refused (429 RESOURCE_EXHAUSTED / TooManyRequests) after the retry policy, or the property's remaining
    tokens fell under the reserve: stop now, resume after retry_after."""

    # Raised from run_reports: the rows of the specs (by index) whose every page had arrived before the stop,
    # so a caller can keep them instead of reading them again.
    completed: dict[int, list[MetricRow]]

    def __init__(self, message: str, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.completed = {}


# GA4's documented token limits of a standard property (Data API quotas): the budget is never estimated below
# them, so a process that starts when the quota is already low still keeps the reserve of the whole budget.
# A GA4 360 property has more; the largest remaining + consumed seen raises the estimate above these.
STANDARD_QUOTA_LIMITS = {"tokens_per_day_remaining": 200_000, "tokens_per_hour_remaining": 40_000,
                         "tokens_per_project_per_hour_remaining": 14_000}

# PropertyQuota field -> (our attribute, which window resets it)
_TOKEN_QUOTAS = (
    ("tokens_per_day", "tokens_per_day_remaining", "day"),
    ("tokens_per_hour", "tokens_per_hour_remaining", "hour"),
    ("tokens_per_project_per_hour", "tokens_per_project_per_hour_remaining", "hour"),
)


def seconds_to_window(window: str, now: datetime) -> float:
    """Seconds from `now` until the quota window rolls over: the next full hour, or the next Pacific midnight."""
    now = now.astimezone(UTC)
    if window == "day":
        local = now.astimezone(QUOTA_TIME_ZONE)
        midnight = datetime.combine(local.date() + timedelta(days=1), day_time(0), tzinfo=QUOTA_TIME_ZONE)
        return max(1.0, (midnight - now).total_seconds())
    next_hour = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
    return max(1.0, (next_hour - now).total_seconds())


def _window_from_message(message: str) -> str | None:
    """Which quota a RESOURCE_EXHAUSTED message names: "day", "hour", "concurrent" or None."""
    text = message.lower()
    if "concurrent" in text:
        return "concurrent"
    if "per day" in text or "daily" in text:
        return "day"
    if "per hour" in text or "hourly" in text:
        return "hour"
    return None


def _typed(value: str, integer: bool) -> float | int:
    if integer:
        try:
            return int(value)
        except ValueError:
            number = float(value)  # "12.0" for an integer metric is read; "12.5" is not an integer
            if not number.is_integer():
                raise ValueError(value) from None
            return int(number)
    return float(value)


def _is_number(value: str, integer: bool) -> bool:
    try:
        _typed(value, integer)
    except ValueError:
        return False
    return True


@dataclass
class _ReportPages:
    """One report's pages: its rows by position, the latest rowCount, what was read and what is asked for."""

    paginator: Paginator  # an offset asked for twice is a pagination loop
    rows: dict[int, MetricRow] = field(default_factory=dict)
    row_count: int = 0
    read: list[tuple[int, int]] = field(default_factory=list)  # (offset, rows) of the pages read
    outstanding: set[int] = field(default_factory=set)

    def ask(self, offset: int) -> None:
        self.paginator.advance(str(offset))
        self.outstanding.add(offset)

    def receive(self, offset: int, rows: list[MetricRow], row_count: int) -> None:
        self.outstanding.discard(offset)
        self.read.append((offset, len(rows)))
        self.rows.update((offset + position, row) for position, row in enumerate(rows))
        self.row_count = row_count  # the latest: GA4's data may change between pages

    def gaps(self, page_size: int) -> list[int]:
        """Offsets of the pages still to ask for: every position under rowCount neither read nor asked for."""
        covered = sorted([(offset, offset + count) for offset, count in self.read]
                         + [(offset, offset + page_size) for offset in self.outstanding])
        offsets: list[int] = []
        position = 0
        for start, end in [*covered, (self.row_count, self.row_count)]:
            while position < min(start, self.row_count):
                offsets.append(position)
                position += page_size
            position = max(position, end)
        return offsets

    def finished(self, page_size: int) -> bool:
        return not self.outstanding and not self.gaps(page_size)

    def ordered(self) -> list[MetricRow]:
        return [self.rows[position] for position in sorted(self.rows) if position < self.row_count]


class GA4Connector:
    """Reads metric reports from one GA4 property (a metrics source, not a work-item source)."""

    kind: ClassVar[str] = "ga4"

    def __init__(
        self,
        *,
        property_id: str,
        endpoint: str | None = None,
        credentials_file: Path | None = None,
        anonymous: bool = False,
        policy: RetryPolicy | None = None,
        page_size: int = 10_000,
        reserve_fraction: float = 0.05,
        credentials: Credentials | None = None,
        limiter: RateLimiter | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        clock: Callable[[], datetime] | None = None,
        quota_floor: Mapping[str, int] | None = None,
    ) -> None:
        """quota_floor: the token limits the budget estimate never goes under (PropertyQuota attribute ->
        tokens); GA4's standard-property limits by default."""
        if endpoint is not None and not re.match(r"^https?://[^/]+", endpoint):
            raise FatalError(f"ga4: endpoint {endpoint!r} is not a URL (e.g. https://analyticsdata.googleapis.com)",
                             vendor=VENDOR)
        match = _PROPERTY.match(str(property_id).strip())
        if not match:
            raise FatalError(f"ga4: property_id {property_id!r} is not a GA4 property id (digits, e.g. 123456789)",
                             vendor=VENDOR)
        if not 0 <= reserve_fraction < 1:
            raise FatalError(f"ga4: reserve_fraction {reserve_fraction!r} is not between 0 and 1", vendor=VENDOR)
        self.property_id = match.group(1)
        self.property = f"properties/{self.property_id}"
        self.page_size = max(1, min(int(page_size), MAX_PAGE))
        self.reserve_fraction = reserve_fraction
        self._clock = clock or (lambda: datetime.now(UTC))
        client_options = {"api_endpoint": endpoint.rstrip("/")} if endpoint else None
        self._client = BetaAnalyticsDataClient(
            transport="rest", client_options=client_options,
            credentials=self._credentials(credentials, credentials_file, anonymous))
        # The REST transport's AuthorizedSession gets the one HTTP policy; so does the plain session google-auth
        # keeps for fetching access tokens (service accounts, ADC), which would otherwise retry on its own.
        session = self._client.transport._session
        make_session(vendor=VENDOR, policy=policy, limiter=limiter, timeout=timeout, session=session)
        token_session = getattr(session, "_auth_request_session", None)
        if token_session is not None:
            make_session(vendor="google-oauth", policy=policy, timeout=timeout, session=token_session)
        self._adapter = session.get_adapter(endpoint or "https://analyticsdata.googleapis.com")
        self.quota: PropertyQuota | None = None  # the latest returned
        self.calls = 0  # batchRunReports calls made: one HTTP request each, plus `retries` when the adapter retried
        # The budget per token quota: the floor, raised by the largest remaining + consumed seen (GA4 reports
        # only what this request consumed, so that alone under-estimates it when the quota is already low).
        self._limits: dict[str, int] = dict(STANDARD_QUOTA_LIMITS if quota_floor is None else quota_floor)
        self._resume_at: datetime | None = None

    @staticmethod
    def _credentials(credentials: Credentials | None, credentials_file: Path | None, anonymous: bool) -> Credentials:
        if credentials is not None:
            return credentials
        if anonymous:
            return AnonymousCredentials()
        if credentials_file is not None:
            try:
                return service_account.Credentials.from_service_account_file(str(credentials_file), scopes=SCOPES)
            except (OSError, ValueError, KeyError) as exc:
                raise AuthError(f"ga4: cannot use the service-account file {credentials_file}: {exc}",
                                vendor=VENDOR) from exc
        try:
            found, _project = google.auth.default(scopes=SCOPES)
        except google.auth.exceptions.DefaultCredentialsError as exc:
            raise AuthError("ga4: no credentials: set credentials_file to a service-account JSON file or set up "
                            f"application default credentials ({exc})", vendor=VENDOR) from exc
        return found

    # -- reports -------------------------------------------------------------------------------------

    def run_reports(self, specs: Sequence[ReportSpec]) -> list[list[MetricRow]]:
        """Rows of every spec, in the order given; batchRunReports with at most 5 requests a call (one property);
        offset/limit paging while rowCount says more rows exist; metric values typed from metricHeaders
        (TYPE_INTEGER -> int, others -> float). Raises QuotaExhausted, AuthError (401/403), FatalError (400: names
        the bad metric/dimension).

        Once a report's first page has told its rowCount, all its remaining pages are asked for together (up to
        5 a call, sharing calls with other reports' pages), rather than one call per page."""
        for spec in specs:
            self._check_spec(spec)
        pages = [_ReportPages(Paginator(VENDOR)) for _ in specs]
        pending: deque[tuple[int, int]] = deque()  # (spec index, offset)
        for index, report_pages in enumerate(pages):
            report_pages.ask(0)
            pending.append((index, 0))
        while pending:
            batch = [pending.popleft() for _ in range(min(MAX_BATCH, len(pending)))]
            try:
                reports = self._batch_run([self._request(specs[index], offset) for index, offset in batch],
                                          [specs[index] for index, _ in batch])
            except QuotaExhausted as exc:
                exc.completed = {index: report_pages.ordered() for index, report_pages in enumerate(pages)
                                 if report_pages.finished(self.page_size)}
                raise
            for (index, offset), report in zip(batch, reports, strict=True):
                rows = self._rows(report, specs[index])
                if not rows and offset < report.row_count:
                    raise PaginationLoopError(
                        f"ga4: report {index} says {report.row_count} rows but the page at offset {offset} is "
                        "empty; stopping instead of asking for it again", vendor=VENDOR)
                pages[index].receive(offset, rows, report.row_count)
            for index in dict.fromkeys(index for index, _ in batch):
                for offset in pages[index].gaps(self.page_size):
                    pages[index].ask(offset)
                    pending.append((index, offset))
        return [report_pages.ordered() for report_pages in pages]

    def _check_spec(self, spec: ReportSpec) -> None:
        if not spec.metrics:
            raise FatalError("ga4: a report needs at least one metric", vendor=VENDOR)
        if spec.start_date > spec.end_date:
            raise FatalError(f"ga4: report of {', '.join(spec.metrics)} starts on {spec.start_date}, after its end "
                             f"{spec.end_date}", vendor=VENDOR)

    def _request(self, spec: ReportSpec, offset: int) -> RunReportRequest:
        expressions = [FilterExpression(filter=Filter(field_name=name, string_filter=Filter.StringFilter(
            match_type=Filter.StringFilter.MatchType.EXACT, value=value, case_sensitive=True)))
            for name, value in spec.filters]
        dimension_filter = None
        if len(expressions) == 1:
            dimension_filter = expressions[0]
        elif expressions:
            dimension_filter = FilterExpression(and_group=FilterExpressionList(expressions=expressions))
        return RunReportRequest(
            property=self.property,
            dimensions=[Dimension(name=name) for name in spec.dimensions],
            metrics=[Metric(name=name) for name in spec.metrics],
            date_ranges=[DateRange(start_date=spec.start_date.isoformat(), end_date=spec.end_date.isoformat())],
            dimension_filter=dimension_filter,
            # a stable order, so that offset paging neither skips nor repeats rows
            order_bys=[OrderBy(dimension=OrderBy.DimensionOrderBy(
                dimension_name=name, order_type=OrderBy.DimensionOrderBy.OrderType.ALPHANUMERIC))
                for name in spec.dimensions],
            offset=offset,
            limit=self.page_size,
            return_property_quota=True,
        )

    def _batch_run(self, requests: list[RunReportRequest], specs: list[ReportSpec]) -> list[RunReportResponse]:
        self._wait_for_window()
        self.calls += 1
        try:
            response = self._client.batch_run_reports(
                request=BatchRunReportsRequest(property=self.property, requests=requests),
                retry=None,  # the session's adapter is the one retry loop
                timeout=None,  # the adapter applies the (connect, read) timeout
            )
        except QuotaExhausted:
            raise
        except RetriableError as exc:  # the adapter's, once its retries are spent
            if exc.status == 429:
                raise self._exhausted(str(exc), exc.retry_after) from exc
            raise
        except google_errors.GoogleAPICallError as exc:  # statuses the adapter let through to the library
            raise self._typed_error(exc, specs) from exc
        except google.auth.exceptions.RefreshError as exc:
            raise AuthError(f"ga4: could not obtain an access token: {exc}", vendor=VENDOR) from exc
        except google.auth.exceptions.TransportError as exc:
            raise RetriableError(f"ga4: could not reach the token endpoint: {exc}", vendor=VENDOR) from exc
        reports = list(response.reports)
        if len(reports) != len(requests):
            raise FatalError(f"ga4: asked for {len(requests)} reports, got {len(reports)}", vendor=VENDOR)
        for report in reports:
            if "property_quota" in report:
                self._note_quota(report)
        self._check_reserve()
        return reports

    def _typed_error(self, exc: google_errors.GoogleAPICallError, specs: list[ReportSpec]) -> Exception:
        """Maps the library's exception by its HTTP code through the one status table (connectors.base), refined
        only where GA4 needs it: 429 (RESOURCE_EXHAUSTED) is QuotaExhausted, 400 a FatalError naming the field,
        and 404 fatal (a GA4 call has no single record to skip: only the property can be missing)."""
        headers = exc.response.headers if exc.response is not None else {}
        status = exc.code if isinstance(exc.code, int) else None
        if status == 429 or isinstance(exc, google_errors.TooManyRequests):  # ResourceExhausted is one
            return self._exhausted(f"ga4: {exc.message}", parse_retry_after(headers.get("Retry-After")))
        if status == 400:
            return self._refused(exc, specs)
        if status == 404:
            return FatalError(f"ga4: {self.property} was not found: {exc.message}", status=404, vendor=VENDOR)
        error = error_for_status(status, headers=headers, body=exc.message, vendor=VENDOR,
                                 where=f"batchRunReports {self.property}") if status is not None else None
        return error or FatalError(f"ga4: {self.property} answered {exc.code}: {exc.message}", status=status,
                                   vendor=VENDOR)

    def _refused(self, exc: google_errors.GoogleAPICallError, specs: list[ReportSpec]) -> FatalError:
        """A 400: names the metrics or dimensions GA4's message mentions (e.g. "Field foo is not a valid metric")."""
        message = exc.message or ""
        names = sorted({name for spec in specs for name in (*spec.metrics, *spec.dimensions,
                                                             *(f for f, _ in spec.filters))
                        if re.search(rf"(?<![\w:]){re.escape(name)}(?![\w:])", message)})
        which = f" (the report's {', '.join(names)})" if names else ""
        return FatalError(f"ga4: {self.property} refused a report{which}: {message}", status=400, vendor=VENDOR)

    def _rows(self, report: RunReportResponse, spec: ReportSpec) -> list[MetricRow]:
        # The raw protobuf message, not the proto-plus wrapper: wrapping every row and value cost about 40 us
        # a row (bench/ga4_reports.py); reading the protobuf directly is several times cheaper.
        raw = RunReportResponse.pb(report)
        dimension_names = [header.name for header in raw.dimension_headers]
        integer = [header.type_ == MetricType.TYPE_INTEGER for header in raw.metric_headers]
        metric_names = [header.name for header in raw.metric_headers]
        rows = []
        for number, row in enumerate(raw.rows):
            dimensions = dict(zip(dimension_names, (value.value for value in row.dimension_values), strict=True))
            texts = [value.value for value in row.metric_values]
            try:
                values = [_typed(text, is_integer) for text, is_integer in zip(texts, integer, strict=True)]
            except ValueError:
                bad = next(n for n, t, i in zip(metric_names, texts, integer, strict=True) if not _is_number(t, i))
                raise FatalError(f"ga4: report of {', '.join(spec.metrics)}, row {number} {dimensions}: "
                                 f"{bad} = {texts[metric_names.index(bad)]!r} is not a number",
                                 vendor=VENDOR) from None
            rows.append(MetricRow(dimensions=dimensions, metrics=dict(zip(metric_names, values, strict=True))))
        return rows

    # -- quota ---------------------------------------------------------------------------------------

    def _note_quota(self, report: RunReportResponse) -> None:
        quota = report.property_quota
        values: dict[str, int | None] = {}
        for quota_field, attribute, _window in _TOKEN_QUOTAS:
            if quota_field in quota:
                status = getattr(quota, quota_field)
                values[attribute] = int(status.remaining)
                self._limits[attribute] = max(self._limits.get(attribute, 0),
                                              int(status.remaining) + int(status.consumed))
            else:
                values[attribute] = None
        concurrent = int(quota.concurrent_requests.remaining) if "concurrent_requests" in quota else None
        self.quota = PropertyQuota(concurrent_requests_remaining=concurrent, **values)

    def _check_reserve(self) -> None:
        """Pauses when a token quota fell under the reserve, so the property keeps headroom for other clients."""
        if self.quota is None:
            return
        for _field, attribute, window in sorted(_TOKEN_QUOTAS, key=lambda q: q[2] != "day"):
            remaining = getattr(self.quota, attribute)
            limit = self._limits.get(attribute, 0)
            if remaining is not None and limit and remaining <= self.reserve_fraction * limit:
                wait = seconds_to_window(window, self._clock())
                self._resume_at = self._clock() + timedelta(seconds=wait)
                log.info("ga4: %s has %d of %d tokens left (%s); pausing for %.0fs", self.property, remaining,
                         limit, attribute.removesuffix("_remaining").replace("_", " "), wait)
                return

    def _wait_for_window(self) -> None:
        if self._resume_at is None:
            return
        left = (self._resume_at - self._clock()).total_seconds()
        if left <= 0:
            self._resume_at = None
            return
        raise QuotaExhausted(f"ga4: {self.property} is short of quota tokens; resuming in {left:.0f}s",
                             retry_after=left, status=429, vendor=VENDOR)

    def _exhausted(self, message: str, retry_after: float | None) -> QuotaExhausted:
        if retry_after is None:
            window = _window_from_message(message)
            if window == "concurrent":
                retry_after = CONCURRENCY_WAIT
            else:
                retry_after = seconds_to_window(window or self._likely_window(), self._clock())
        if retry_after > CONCURRENCY_WAIT:
            self._resume_at = self._clock() + timedelta(seconds=retry_after)
        return QuotaExhausted(f"{message} (resuming in {retry_after:.0f}s)", retry_after=retry_after, status=429,
                              vendor=VENDOR)

    def _likely_window(self) -> str:
        """The window to wait for when a 429 does not say which quota ran out: the day's if it is the lowest."""
        if self.quota is not None and self.quota.tokens_per_day_remaining is not None:
            day_limit = self._limits.get("tokens_per_day_remaining", 0)
            if day_limit and self.quota.tokens_per_day_remaining <= self.reserve_fraction * day_limit:
                return "day"
        return "hour"

    @property
    def retries(self) -> int:
        """Calls the session's adapter retried (429, 5xx, dropped connections), for tests and benchmarks."""
        return int(getattr(self._adapter, "retries", 0))

    def close(self) -> None:
        self._client.transport.close()

    def __enter__(self) -> GA4Connector:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()
