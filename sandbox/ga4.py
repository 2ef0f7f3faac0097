"""An emulated Google Analytics 4 property over real HTTP: the Data API v1beta's runReport and batchRunReports
as the official python client sends them (REST, `$alt=json;enum-encoding=int`, int64 values as strings),
answering bodies that validate against the discovery document (tests/sandbox/test_ga4_sandbox_spec.py).

What it serves: dimensions date, eventName, sessionDefaultChannelGroup, landingPage, pagePath; the summable
metrics of sandbox.ga4_data plus two computed ones (engagementRate, averageSessionDuration); one date range per
report (YYYY-MM-DD, NdaysAgo, yesterday, today); dimension filters (string and in-list filters, and/or/not
groups); orderBys; offset/limit paging with rowCount; keepEmptyRows; returnPropertyQuota. Anything else in a
request is refused with a 400 that names it, so a client relying on an unemulated feature fails loudly.

Authentication: anonymous by default; with `token` set or a service account added, requests need a bearer token:
the static token, or a JWT signed by the service account (what the client sends for a service-account key).

Data freshness, the way GA4 processes late hits: the property's `today` shows 60 % of its final values and
yesterday 90 %; moving the clock on finalises them. `set_value` makes a late correction.

Quota: every report costs tokens (1 + 1 per 90 days of its date range); the property has budgets per day
(reset at midnight Pacific time), per hour and per project per hour (reset on the hour); a request that does not
fit answers 429 RESOURCE_EXHAUSTED and consumes nothing. A 429 on demand: the fault plumbing of sandbox.common.

Run it alone with `python -m sandbox.ga4 --port 8084`.
"""

from __future__ import annotations

import argparse
import hmac
import json
import math
import re
import threading
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from sandbox.common import SandboxState, install_sandbox_plumbing
from sandbox.ga4_data import CHANNELS, EVENTS, FIRST_DAY, LAST_DAY, METRIC_INDEX, PAGES, Cell, seeded_cube, split

PROPERTY_ID = "123456789"
TIME_ZONE = "America/Los_Angeles"
CURRENCY = "USD"
MAX_BATCH = 5  # batchRunReports takes at most 5 requests
MAX_LIMIT = 250_000  # GA4 returns at most 250,000 rows a report
FRESHNESS = {0: 0.6, 1: 0.9}  # days before `today` -> share of the final value already processed

DIMENSIONS = ("date", "eventName", "sessionDefaultChannelGroup", "landingPage", "pagePath")
# Proto enum numbers (google.analytics.data.v1beta.MetricType), sent when the client asks enum-encoding=int.
METRIC_TYPE_NUMBER = {"TYPE_INTEGER": 1, "TYPE_FLOAT": 2, "TYPE_SECONDS": 4}
METRIC_TYPES = {
    "eventCount": "TYPE_INTEGER", "keyEvents": "TYPE_INTEGER", "screenPageViews": "TYPE_INTEGER",
    "sessions": "TYPE_INTEGER", "engagedSessions": "TYPE_INTEGER", "activeUsers": "TYPE_INTEGER",
    "newUsers": "TYPE_INTEGER", "userEngagementDuration": "TYPE_SECONDS",
    "engagementRate": "TYPE_FLOAT", "averageSessionDuration": "TYPE_SECONDS",
}
# Computed metrics: (numerator, denominator) of summable ones, evaluated per row after summing.
RATIOS = {"engagementRate": ("engagedSessions", "sessions"),
          "averageSessionDuration": ("userEngagementDuration", "sessions")}
MATCH_TYPES = {1: "EXACT", 2: "BEGINS_WITH", 3: "ENDS_WITH", 4: "CONTAINS", 5: "FULL_REGEXP", 6: "PARTIAL_REGEXP"}
ORDER_TYPES = {1: "ALPHANUMERIC", 2: "CASE_INSENSITIVE_ALPHANUMERIC", 3: "NUMERIC"}
REQUEST_FIELDS = frozenset({
    "property", "dimensions", "metrics", "dateRanges", "dimensionFilter", "offset", "limit", "orderBys",
    "currencyCode", "keepEmptyRows", "returnPropertyQuota", "metricFilter", "metricAggregations", "cohortSpec",
    "comparisons"})
UNEMULATED_FIELDS = ("metricFilter", "metricAggregations", "cohortSpec", "comparisons")

# Budgets of a standard property (the discovery document's PropertyQuota descriptions).
STANDARD_BUDGET = {"tokensPerDay": 200_000, "tokensPerHour": 40_000, "tokensPerProjectPerHour": 14_000,
                   "concurrentRequests": 10, "serverErrorsPerProjectPerHour": 10,
                   "potentiallyThresholdedRequestsPerHour": 120}
TOKEN_QUOTAS = ("tokensPerDay", "tokensPerHour", "tokensPerProjectPerHour")
QUOTA_MESSAGES = {"tokensPerDay": "Exhausted property tokens per day.",
                  "tokensPerHour": "Exhausted property tokens per hour.",
                  "tokensPerProjectPerHour": "Exhausted property tokens per project per hour.",
                  "concurrentRequests": "Exhausted concurrent requests quota."}

_DAYS_AGO = re.compile(r"^(\d+)daysAgo$")
_ISO_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


class ApiError(Exception):
    """A refusal shaped like Google's JSON error envelope ({"error": {code, message, status}})."""

    def __init__(self, code: int, status: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.status = status
        self.message = message

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message, "status": self.status}}


def resource_exhausted(message: str = "Exhausted property tokens per hour.") -> dict[str, Any]:
    """The body of GA4's 429, for faults injected through the sandbox plumbing."""
    return ApiError(429, "RESOURCE_EXHAUSTED", message).body()


def invalid(message: str) -> ApiError:
    return ApiError(400, "INVALID_ARGUMENT", message)


def report_cost(start: date, end: date) -> int:
    """Tokens a report costs in the sandbox: 1, plus 1 for every 90 days of its date range."""
    return 1 + ((end - start).days + 1) // 90


class GA4Property:
    """One GA4 property's state: the clock, the data (seeded, with late corrections), quota and auth. Thread-safe.

    Tests read the ground truth with `value` / `series`, move the clock with `advance` or `today = ...`, make
    late corrections with `set_value` and shape the quota with `set_quota_budget` / `new_hour` / `new_day`.
    """

    def __init__(self, *, property_id: str = PROPERTY_ID, seed: bool = True, today: date = date(2026, 12, 1),
                 quota_clock: Callable[[], datetime] | None = None) -> None:
        self.lock = threading.RLock()
        self.property_id = property_id
        self._today = today
        self._base = seeded_cube() if seed else {}
        self._overrides: dict[date, dict[Cell, tuple[int, ...]]] = {}  # late corrections, on top of the seed
        self.token: str | None = None  # when set, requests need "Authorization: Bearer <token>"
        # client email -> public key (PEM): requests may carry a JWT that service account signed itself
        self.service_accounts: dict[str, str] = {}
        self.budget: dict[str, int] = dict(STANDARD_BUDGET)
        self.quota_clock = quota_clock or (lambda: datetime.now(UTC))
        self._consumed: dict[str, int] = dict.fromkeys(TOKEN_QUOTAS, 0)
        self._windows: dict[str, Any] = {}
        self._in_flight = 0
        self.requests: list[dict[str, Any]] = []  # what clients sent (path, query, headers, body), newest last
        self.reports_served = 0
        self._static = {(c, e, p): {"eventName": EVENTS[e], "sessionDefaultChannelGroup": CHANNELS[c],
                                    "landingPage": PAGES[p], "pagePath": PAGES[p]}
                        for c in range(len(CHANNELS)) for e in range(len(EVENTS)) for p in range(len(PAGES))}

    # -- the clock ---------------------------------------------------------------------------------

    @property
    def today(self) -> date:
        return self._today

    @today.setter
    def today(self, value: date) -> None:
        with self.lock:
            self._today = value

    def advance(self, days: int = 1) -> None:
        """Moves the property's clock on; the days that were partial become final."""
        with self.lock:
            self._today += timedelta(days=days)

    def freshness(self, day: date) -> float:
        """The share of `day`'s final values the API shows today (0 for days still to come)."""
        age = (self._today - day).days
        if age < 0 or day < FIRST_DAY or day > LAST_DAY:
            return 0.0
        return FRESHNESS.get(age, 1.0)

    # -- data ----------------------------------------------------------------------------------------

    def _cells(self, day: date) -> Mapping[Cell, tuple[int, ...]]:
        base = self._base.get(day, {})
        over = self._overrides.get(day)
        return {**base, **over} if over else base

    def _matching(self, dims: Mapping[str, str]) -> list[Cell]:
        unknown = set(dims) - set(DIMENSIONS) - {"date"}
        if unknown or "date" in dims:
            raise ValueError(f"dims may name {', '.join(DIMENSIONS[1:])}; got {sorted(dims)}")
        return [cell for cell, values in self._static.items()
                if all(values[name] == wanted for name, wanted in dims.items())]

    def value(self, day: date, dims: Mapping[str, str], metric: str, *, reported: bool = False) -> int:
        """The final value of a summable metric on `day` over the cells matching `dims` (exact values);
        reported=True: what the API shows today (partial for the last two days)."""
        index = METRIC_INDEX[metric]
        with self.lock:
            cells = self._cells(day)
            total = sum(cells[cell][index] for cell in self._matching(dims) if cell in cells)
            return round(total * self.freshness(day)) if reported else total

    def series(self, start: date, end: date, dims: Mapping[str, str], metric: str) -> dict[date, int]:
        """Final daily values from start to end (inclusive)."""
        return {start + timedelta(n): self.value(start + timedelta(n), dims, metric)
                for n in range((end - start).days + 1)}

    def set_value(self, day: date, dims: Mapping[str, str], metric: str, value: int) -> None:
        """A late correction: the final value of `metric` on `day` over the cells matching `dims` becomes
        `value`, spread over those cells in proportion to what they held."""
        if metric not in METRIC_INDEX:
            raise ValueError(f"{metric!r} is not a summable metric of the sandbox")
        if value < 0 or int(value) != value:
            raise ValueError(f"a corrected value is a non-negative integer, got {value!r}")
        index = METRIC_INDEX[metric]
        with self.lock:
            cells = self._cells(day)
            matching = [cell for cell in self._matching(dims) if cell in cells]
            if not matching:
                raise ValueError(f"no data on {day} for {dict(dims)}")
            weights = tuple(cells[cell][index] for cell in matching)
            parts = split(int(value), weights if sum(weights) else (1,) * len(matching))
            over = self._overrides.setdefault(day, {})
            for cell, part in zip(matching, parts, strict=True):
                row = list(cells[cell])
                row[index] = part
                over[cell] = tuple(row)

    # -- quota ---------------------------------------------------------------------------------------

    def set_quota_budget(self, *, tokens_per_day: int | None = None, tokens_per_hour: int | None = None,
                         tokens_per_project_per_hour: int | None = None,
                         concurrent_requests: int | None = None) -> None:
        """Sets the property's budgets (None leaves one as it is); consumption so far still counts."""
        with self.lock:
            for key, value in (("tokensPerDay", tokens_per_day), ("tokensPerHour", tokens_per_hour),
                               ("tokensPerProjectPerHour", tokens_per_project_per_hour),
                               ("concurrentRequests", concurrent_requests)):
                if value is not None:
                    self.budget[key] = int(value)

    def new_hour(self) -> None:
        """The hourly windows roll over (as at the top of the hour)."""
        with self.lock:
            self._consumed["tokensPerHour"] = 0
            self._consumed["tokensPerProjectPerHour"] = 0

    def new_day(self) -> None:
        """The daily window rolls over (as at midnight Pacific time), and with it the hourly ones."""
        with self.lock:
            self._consumed["tokensPerDay"] = 0
            self.new_hour()

    def spend_tokens(self, tokens: int, *, quotas: tuple[str, ...] = TOKEN_QUOTAS) -> None:
        """Other clients of the property spent `tokens` in the current windows of `quotas` (e.g. a client of
        another Google Cloud project counts against tokensPerHour and tokensPerDay, not our per-project one)."""
        with self.lock:
            self._roll_windows()
            for key in quotas:
                self._consumed[key] += tokens

    def consumed(self) -> dict[str, int]:
        with self.lock:
            self._roll_windows()
            return dict(self._consumed)

    def _roll_windows(self) -> None:
        now = self.quota_clock().astimezone(UTC)
        hour = now.replace(minute=0, second=0, microsecond=0)
        day = now.astimezone(ZoneInfo(TIME_ZONE)).date()
        if self._windows.get("hour", hour) != hour:
            self.new_hour()
        if self._windows.get("day", day) != day:
            self.new_day()
        self._windows = {"hour": hour, "day": day}

    def _charge(self, tokens: int) -> dict[str, dict[str, int]]:
        """Charges a request's tokens or raises 429 RESOURCE_EXHAUSTED (charging nothing)."""
        with self.lock:
            self._roll_windows()
            for key in TOKEN_QUOTAS:
                if self._consumed[key] + tokens > self.budget[key]:
                    raise ApiError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGES[key])
            for key in TOKEN_QUOTAS:
                self._consumed[key] += tokens
            return self._quota_state(tokens)

    def _quota_state(self, tokens: int) -> dict[str, dict[str, int]]:
        state = {key: {"consumed": tokens, "remaining": max(0, self.budget[key] - self._consumed[key])}
                 for key in TOKEN_QUOTAS}
        # like GA4: this request is not counted against the concurrent requests it reports
        others = max(0, self._in_flight - 1)
        state["concurrentRequests"] = {"remaining": max(0, self.budget["concurrentRequests"] - others)}
        state["serverErrorsPerProjectPerHour"] = {"remaining": self.budget["serverErrorsPerProjectPerHour"]}
        state["potentiallyThresholdedRequestsPerHour"] = {
            "remaining": self.budget["potentiallyThresholdedRequestsPerHour"]}
        # proto3 JSON leaves zero values out
        return {key: {k: v for k, v in status.items() if v} for key, status in state.items()}

    def enter(self) -> None:
        with self.lock:
            if self._in_flight >= self.budget["concurrentRequests"]:
                raise ApiError(429, "RESOURCE_EXHAUSTED", QUOTA_MESSAGES["concurrentRequests"])
            self._in_flight += 1

    def leave(self) -> None:
        with self.lock:
            self._in_flight -= 1

    # -- auth --------------------------------------------------------------------------------------

    def add_service_account(self, email: str, public_key_pem: str) -> None:
        """Accepts self-signed JWTs of this service account (from then on, every request needs credentials)."""
        with self.lock:
            self.service_accounts[email] = public_key_pem

    def authenticate(self, authorization: str) -> None:
        """Checks the Authorization header when the property requires credentials: the static token, or a JWT
        signed by a known service account with an Analytics scope (what the python client sends for a
        service-account key: a self-signed JWT, no token exchange)."""
        if self.token is None and not self.service_accounts:
            return  # anonymous access
        bearer = authorization[7:].strip() if authorization.startswith("Bearer ") else ""
        if self.token is not None and bearer and hmac.compare_digest(bearer, self.token):
            return
        unauthenticated = ApiError(401, "UNAUTHENTICATED",
                                   "Request had invalid authentication credentials. Expected OAuth 2 access "
                                   "token, login cookie or other valid authentication credential.")
        if bearer.count(".") != 2:
            raise unauthenticated
        from google.auth import jwt  # the verifier google-auth itself uses

        try:
            issuer = jwt.decode(bearer, verify=False).get("iss")
            key = self.service_accounts.get(issuer) if isinstance(issuer, str) else None
            if key is None:
                raise unauthenticated
            claims = jwt.decode(bearer, certs=key, verify=True)
        except ValueError:
            raise unauthenticated from None
        scopes = str(claims.get("scope", "")).split()
        if not any(scope.startswith("https://www.googleapis.com/auth/analytics") for scope in scopes):
            raise ApiError(403, "PERMISSION_DENIED", "Request had insufficient authentication scopes.")

    # -- reports -------------------------------------------------------------------------------------

    def check_property(self, name: str) -> None:
        if name.removeprefix("properties/") != self.property_id:
            raise ApiError(403, "PERMISSION_DENIED",
                           "User does not have sufficient permissions for this property. To learn more about "
                           "Property ID, see https://developers.google.com/analytics/devguides/reporting/data/v1/"
                           "property-id.")

    def run_batch(self, path_property: str, reports: list[dict[str, Any]], *, int_enums: bool,
                  row_count_bonus: int = 0) -> list[dict]:
        """Answers several report requests (one property), charging their tokens together.
        row_count_bonus: a misbehaviour for tests, rowCount says that many rows more than there are."""
        self.check_property(path_property)
        plans = []
        for index, body in enumerate(reports):
            where = f"requests[{index}]" if len(reports) > 1 or index else ""
            inner = body.get("property")
            if inner and inner != f"properties/{self.property_id}":
                raise invalid(f"{where or 'request'}: property {inner!r} differs from the path's "
                              f"properties/{self.property_id}; a batch reads one property")
            plans.append(self._plan(body, where))
        quota = self._charge(sum(plan["cost"] for plan in plans))
        answers = []
        for plan in plans:
            answer = self._answer(plan, int_enums=int_enums)
            if row_count_bonus:
                answer["rowCount"] = answer.get("rowCount", 0) + row_count_bonus
            if plan["returnPropertyQuota"]:
                answer["propertyQuota"] = quota
            answers.append(answer)
        with self.lock:
            self.reports_served += len(answers)
        return answers

    def _plan(self, body: dict[str, Any], where: str) -> dict[str, Any]:
        """Checks one RunReportRequest body and returns what to compute."""
        at = f" at '{where}'" if where else ""
        if not isinstance(body, dict):
            raise invalid(f"Invalid JSON payload received{at}: a report request is an object")
        for name in body:
            if name not in REQUEST_FIELDS:
                raise invalid(f'Invalid JSON payload received. Unknown name "{name}"{at}: Cannot find field.')
        for name in UNEMULATED_FIELDS:
            if body.get(name):
                raise invalid(f"{name}{at} is not emulated by the GA4 sandbox")
        dimensions = [d.get("name") if isinstance(d, dict) else None for d in body.get("dimensions") or []]
        metrics = [m.get("name") if isinstance(m, dict) else None for m in body.get("metrics") or []]
        for d in body.get("dimensions") or []:
            if isinstance(d, dict) and d.get("dimensionExpression"):
                raise invalid(f"dimensionExpression{at} is not emulated by the GA4 sandbox")
        for m in body.get("metrics") or []:
            if isinstance(m, dict) and (m.get("expression") or m.get("invisible")):
                raise invalid(f"metric expressions{at} are not emulated by the GA4 sandbox")
        if not metrics and not dimensions:
            raise invalid(f"A report{at} needs at least one dimension or metric.")
        for name in dimensions:
            if name not in DIMENSIONS:
                raise invalid(f"Field {name} is not a valid dimension. For a list of valid dimensions and "
                              "metrics, see https://developers.google.com/analytics/devguides/reporting/data/v1/"
                              "api-schema")
        for name in metrics:
            if name not in METRIC_TYPES:
                raise invalid(f"Field {name} is not a valid metric. For a list of valid dimensions and metrics, "
                              "see https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema")
        if len(set(dimensions)) != len(dimensions) or len(set(metrics)) != len(metrics):
            raise invalid(f"A report{at} names a dimension or metric twice.")
        ranges = body.get("dateRanges") or []
        if len(ranges) != 1:
            raise invalid(f"dateRanges{at}: the GA4 sandbox serves exactly one date range per report, "
                          f"got {len(ranges)}")
        start = self._date(ranges[0].get("startDate"), f"dateRanges[0].startDate{at}")
        end = self._date(ranges[0].get("endDate"), f"dateRanges[0].endDate{at}")
        if start > end:
            raise invalid(f"dateRanges[0]{at}: startDate {start} is after endDate {end}.")
        offset = _int64(body.get("offset", "0"), f"offset{at}")
        limit = _int64(body.get("limit", "10000"), f"limit{at}") or 10_000
        if offset < 0 or limit < 0:
            raise invalid(f"offset and limit{at} cannot be negative.")
        return {
            "dimensions": dimensions, "metrics": metrics, "start": start, "end": end, "offset": offset,
            "limit": min(limit, MAX_LIMIT), "filter": _compile_filter(body.get("dimensionFilter"), at),
            "filter_uses_date": "date" in json.dumps(body.get("dimensionFilter") or {}),
            "order": _compile_order(body.get("orderBys") or [], dimensions, metrics, at),
            "keepEmptyRows": bool(body.get("keepEmptyRows")),
            "returnPropertyQuota": bool(body.get("returnPropertyQuota")),
            "cost": report_cost(start, end),
        }

    def _date(self, value: Any, where: str) -> date:
        if not isinstance(value, str):
            raise invalid(f"{where} is required (YYYY-MM-DD, NdaysAgo, yesterday or today).")
        if value == "today":
            return self._today
        if value == "yesterday":
            return self._today - timedelta(days=1)
        if match := _DAYS_AGO.match(value):
            return self._today - timedelta(days=int(match.group(1)))
        if _ISO_DATE.match(value):
            try:
                return date.fromisoformat(value)
            except ValueError:
                pass
        raise invalid(f"{where}: {value!r} is not a date (YYYY-MM-DD, NdaysAgo, yesterday or today).")

    def _answer(self, plan: dict[str, Any], *, int_enums: bool) -> dict[str, Any]:
        dimensions: list[str] = plan["dimensions"]
        metrics: list[str] = plan["metrics"]
        keep = plan["filter"]
        needed = sorted({METRIC_INDEX[part] for name in metrics
                         for part in (RATIOS.get(name) or (name,))})
        # row key -> summed components; freshness applies to each day's sum, so a (date, filter) row reports
        # round(final * share), as the ground truth's value(..., reported=True) does.
        sums: dict[tuple[str, ...], dict[int, float]] = defaultdict(lambda: dict.fromkeys(needed, 0))
        with self.lock:
            static_ok = None if plan["filter_uses_date"] else {
                cell: keep(values) for cell, values in self._static.items()}
            day = max(plan["start"], FIRST_DAY)
            while day <= min(plan["end"], self._today, LAST_DAY):
                share = self.freshness(day)
                day_text = day.strftime("%Y%m%d")
                day_sums: dict[tuple[str, ...], dict[int, int]] = defaultdict(lambda: dict.fromkeys(needed, 0))
                for cell, values in self._cells(day).items():
                    if static_ok is not None:
                        if not static_ok[cell]:
                            continue
                    elif not keep({**self._static[cell], "date": day_text}):
                        continue
                    statics = self._static[cell]
                    key = tuple(day_text if name == "date" else statics[name] for name in dimensions)
                    target = day_sums[key]
                    for index in needed:
                        target[index] += values[index]
                for key, parts in day_sums.items():
                    total = sums[key]
                    for index, amount in parts.items():
                        total[index] += round(amount * share)
                day += timedelta(days=1)
        rows = []
        for key, parts in sums.items():
            values = [_metric_value(name, parts) for name in metrics]
            if not plan["keepEmptyRows"] and metrics and not any(values):
                continue
            rows.append((key, values))
        rows.sort(key=plan["order"])
        window = rows[plan["offset"]: plan["offset"] + plan["limit"]]
        answer: dict[str, Any] = {}
        if dimensions:
            answer["dimensionHeaders"] = [{"name": name} for name in dimensions]
        if metrics:
            answer["metricHeaders"] = [
                {"name": name, "type": METRIC_TYPE_NUMBER[METRIC_TYPES[name]] if int_enums else METRIC_TYPES[name]}
                for name in metrics]
        if window:
            answer["rows"] = [{**({"dimensionValues": [{"value": v} for v in key]} if dimensions else {}),
                               **({"metricValues": [{"value": _text(v)} for v in values]} if metrics else {})}
                              for key, values in window]
        if rows:
            answer["rowCount"] = len(rows)  # int32: a JSON number
        answer["metadata"] = {"currencyCode": CURRENCY, "timeZone": TIME_ZONE}
        answer["kind"] = "analyticsData#runReport"
        return answer

    def log_request(self, path: str, query: str, headers: Mapping[str, str], body: Any) -> None:
        with self.lock:
            self.requests.append({"path": path, "query": query, "headers": dict(headers), "body": body})
            del self.requests[:-1000]


def _int64(value: Any, where: str) -> int:
    # proto3 JSON sends int64 as a string; a number is accepted too, as Google's parser does
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise invalid(f"{where}: {value!r} is not an int64 (a decimal string).")
    try:
        return int(value)
    except ValueError:
        raise invalid(f"{where}: {value!r} is not an int64 (a decimal string).") from None


def _metric_value(name: str, parts: Mapping[int, float]) -> float:
    if name in RATIOS:
        numerator, denominator = (parts[METRIC_INDEX[n]] for n in RATIOS[name])
        return numerator / denominator if denominator else 0.0
    return parts[METRIC_INDEX[name]]


def _text(value: float) -> str:
    """GA4's metric value text: integers without a decimal point, floats in their shortest form."""
    if isinstance(value, int) or float(value).is_integer():
        return str(int(value))
    return repr(round(float(value), 10))


def _enum(value: Any, names: Mapping[int, str], where: str) -> str:
    """An enum as the client sent it: a number (enum-encoding=int) or its name."""
    if isinstance(value, int) and not isinstance(value, bool) and value in names:
        return names[value]
    if isinstance(value, str) and value in names.values():
        return value
    raise invalid(f"{where}: {value!r} is not one of {sorted(names.values())}.")


def _compile_filter(expression: Any, at: str) -> Callable[[Mapping[str, str]], bool]:
    """A FilterExpression as a predicate over a cell's dimension values."""
    if not expression:
        return lambda _values: True
    if not isinstance(expression, dict) or len(expression) != 1:
        raise invalid(f"dimensionFilter{at}: an expression holds exactly one of andGroup, orGroup, "
                      "notExpression, filter.")
    (kind, inner), = expression.items()
    if kind in ("andGroup", "orGroup"):
        parts = [_compile_filter(e, at) for e in (inner or {}).get("expressions") or []]
        if kind == "andGroup":
            return lambda values: all(part(values) for part in parts)
        return lambda values: any(part(values) for part in parts)
    if kind == "notExpression":
        part = _compile_filter(inner, at)
        return lambda values: not part(values)
    if kind != "filter" or not isinstance(inner, dict):
        raise invalid(f"dimensionFilter{at}: unknown expression {kind!r}.")
    name = inner.get("fieldName")
    if name not in DIMENSIONS:
        raise invalid(f"Field {name} is not a valid dimension. For a list of valid dimensions and metrics, see "
                      "https://developers.google.com/analytics/devguides/reporting/data/v1/api-schema")
    if "stringFilter" in inner:
        spec = inner["stringFilter"] or {}
        match = _enum(spec.get("matchType", 1), MATCH_TYPES, f"dimensionFilter.filter.stringFilter.matchType{at}")
        wanted = str(spec.get("value", ""))
        sensitive = bool(spec.get("caseSensitive"))

        def fold(text: str) -> str:
            return text if sensitive else text.lower()

        test: Callable[[str], bool]
        if match == "EXACT":
            test = lambda text: fold(text) == fold(wanted)  # noqa: E731
        elif match == "BEGINS_WITH":
            test = lambda text: fold(text).startswith(fold(wanted))  # noqa: E731
        elif match == "ENDS_WITH":
            test = lambda text: fold(text).endswith(fold(wanted))  # noqa: E731
        elif match == "CONTAINS":
            test = lambda text: fold(wanted) in fold(text)  # noqa: E731
        else:
            pattern = re.compile(wanted, 0 if sensitive else re.IGNORECASE)
            test = (lambda text: pattern.fullmatch(text) is not None) if match == "FULL_REGEXP" \
                else (lambda text: pattern.search(text) is not None)
        return lambda values: test(values[name])
    if "inListFilter" in inner:
        spec = inner["inListFilter"] or {}
        sensitive = bool(spec.get("caseSensitive"))
        wanted_set = {v if sensitive else v.lower() for v in spec.get("values") or []}
        return lambda values: (values[name] if sensitive else values[name].lower()) in wanted_set
    raise invalid(f"dimensionFilter.filter{at}: only stringFilter and inListFilter are emulated by the GA4 sandbox.")


def _compile_order(order_bys: Iterable[Any], dimensions: list[str], metrics: list[str],
                   at: str) -> Callable[[tuple[tuple[str, ...], list[float]]], Any]:
    """orderBys as a sort key; without them rows come ordered by their dimension values."""
    keys: list[Callable[[tuple[tuple[str, ...], list[float]]], Any]] = []
    for index, order in enumerate(order_bys):
        descending = bool(order.get("desc"))
        if "dimension" in order:
            name = order["dimension"].get("dimensionName")
            if name not in dimensions:
                raise invalid(f"orderBys[{index}]{at}: {name!r} is not a dimension of the report.")
            position = dimensions.index(name)
            kind = _enum(order["dimension"].get("orderType", 1), ORDER_TYPES, f"orderBys[{index}].orderType{at}")
            if kind == "NUMERIC":
                def sort_value(row: Any, p: int = position) -> Any:
                    return float(row[0][p]) if re.fullmatch(r"-?\d+(\.\d+)?", row[0][p]) else math.inf
            elif kind == "CASE_INSENSITIVE_ALPHANUMERIC":
                def sort_value(row: Any, p: int = position) -> Any:
                    return row[0][p].lower()
            else:
                def sort_value(row: Any, p: int = position) -> Any:
                    return row[0][p]
        elif "metric" in order:
            name = order["metric"].get("metricName")
            if name not in metrics:
                raise invalid(f"orderBys[{index}]{at}: {name!r} is not a metric of the report.")

            def sort_value(row: Any, p: int = metrics.index(name)) -> Any:
                return row[1][p]
        else:
            raise invalid(f"orderBys[{index}]{at}: only dimension and metric orderings are emulated.")
        keys.append(_Reversed.wrap(sort_value) if descending else sort_value)
    keys.append(lambda row: row[0])  # ties (and no orderBys): by dimension values, so paging is stable
    return lambda row: tuple(key(row) for key in keys)


class _Reversed:
    """Inverts the order of any comparable value, for descending sort keys mixed with ascending ones."""

    __slots__ = ("value",)

    def __init__(self, value: Any) -> None:
        self.value = value

    def __lt__(self, other: _Reversed) -> bool:
        return bool(other.value < self.value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Reversed) and bool(other.value == self.value)

    def __hash__(self) -> int:
        return hash(self.value)

    @staticmethod
    def wrap(key: Callable[[Any], Any]) -> Callable[[Any], _Reversed]:
        return lambda row: _Reversed(key(row))


def create_app(state: GA4Property | SandboxState | None = None, seed: bool = True,
               today: date = date(2026, 12, 1), sandbox: SandboxState | None = None) -> FastAPI:
    """The emulated Data API for one property; `app.state.ga4` is its GA4Property, `app.state.sandbox` the
    counters and faults. `state` is the GA4Property (a SandboxState given there is taken as `sandbox`)."""
    if isinstance(state, SandboxState):
        state, sandbox = None, state
    ga4 = state or GA4Property(seed=seed, today=today)
    sandbox = sandbox or SandboxState()
    app = FastAPI(title="backlog-sync sandbox: Google Analytics Data API v1beta", docs_url=None, redoc_url=None)
    app.state.ga4 = ga4
    app.state.sandbox = sandbox
    install_sandbox_plumbing(app, sandbox)

    def answer(headers: Mapping[str, str], query: Mapping[str, str], property_id: str, body: Any,
               batch: bool) -> dict[str, Any]:
        ga4.authenticate(headers.get("authorization", ""))
        if not isinstance(body, dict):
            raise invalid("Invalid JSON payload received: the body is an object.")
        # `$alt=json;enum-encoding=int` (what the python client asks for): enums travel as numbers
        int_enums = "enum-encoding=int" in query.get("$alt", "")
        bonus = int(sandbox.flags.get("row_count_bonus", 0))  # POST /_sandbox/flags {"row_count_bonus": 3}
        ga4.enter()
        try:
            if not batch:
                return ga4.run_batch(property_id, [body], int_enums=int_enums, row_count_bonus=bonus)[0]
            unknown = set(body) - {"requests"}
            if unknown:
                raise invalid(f'Invalid JSON payload received. Unknown name "{sorted(unknown)[0]}": '
                              "Cannot find field.")
            reports = body.get("requests") or []
            if not isinstance(reports, list) or not reports:
                raise invalid("requests: a batch needs at least one report request.")
            if len(reports) > MAX_BATCH:
                raise invalid(f"requests: a batch holds at most {MAX_BATCH} requests, got {len(reports)}.")
            return {"reports": ga4.run_batch(property_id, reports, int_enums=int_enums, row_count_bonus=bonus),
                    "kind": "analyticsData#batchRunReports"}
        finally:
            ga4.leave()

    async def serve(request: Request, property_id: str, batch: bool) -> JSONResponse:
        raw = await request.body()
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            return JSONResponse(invalid("Invalid JSON payload received.").body(), status_code=400)
        ga4.log_request(request.url.path, request.url.query, request.headers, body)
        try:
            # in a worker thread: reports run concurrently, as the concurrentRequests quota assumes
            result = await run_in_threadpool(answer, request.headers, request.query_params, property_id, body,
                                             batch)
        except ApiError as error:
            return JSONResponse(error.body(), status_code=error.code)
        except (AttributeError, KeyError, TypeError) as exc:  # a body of the wrong shape somewhere inside
            error = invalid(f"Invalid JSON payload received: {type(exc).__name__}: {exc}")
            return JSONResponse(error.body(), status_code=400)
        return JSONResponse(result)

    @app.post("/v1beta/properties/{property_id}:runReport")
    async def run_report(request: Request, property_id: str) -> JSONResponse:
        return await serve(request, property_id, batch=False)

    @app.post("/v1beta/properties/{property_id}:batchRunReports")
    async def batch_run_reports(request: Request, property_id: str) -> JSONResponse:
        return await serve(request, property_id, batch=True)

    # Control routes (like the plumbing's): the demo and manual runs move the clock, correct data and shape quota.
    @app.get("/_sandbox/ga4", include_in_schema=False)
    def control_state() -> dict[str, Any]:
        return {"property": ga4.property_id, "today": ga4.today.isoformat(), "budget": dict(ga4.budget),
                "consumed": ga4.consumed(), "reports_served": ga4.reports_served}

    @app.post("/_sandbox/ga4/clock", include_in_schema=False)
    async def control_clock(request: Request) -> dict[str, Any]:
        body = await request.json()  # {"today": "2026-12-05"} or {"advance_days": 1}
        if "today" in body:
            ga4.today = date.fromisoformat(body["today"])
        ga4.advance(int(body.get("advance_days", 0)))
        return {"today": ga4.today.isoformat()}

    @app.post("/_sandbox/ga4/value", include_in_schema=False)
    async def control_value(request: Request) -> JSONResponse:
        body = await request.json()  # {"date": "2026-11-28", "dims": {...}, "metric": "eventCount", "value": 50}
        try:
            day = date.fromisoformat(body["date"])
            ga4.set_value(day, body.get("dims") or {}, body["metric"], body["value"])
        except (KeyError, TypeError, ValueError) as exc:
            return JSONResponse({"ok": False, "error": str(exc)}, status_code=400)
        return JSONResponse({"ok": True, "value": ga4.value(day, body.get("dims") or {}, body["metric"])})

    @app.post("/_sandbox/ga4/quota", include_in_schema=False)
    async def control_quota(request: Request) -> dict[str, Any]:
        body = await request.json()  # {"tokens_per_hour": 50} and/or {"new_hour": true} / {"new_day": true}
        ga4.set_quota_budget(**{key: body[key] for key in ("tokens_per_day", "tokens_per_hour",
                                                           "tokens_per_project_per_hour", "concurrent_requests")
                                if key in body})
        if body.get("new_day"):
            ga4.new_day()
        elif body.get("new_hour"):
            ga4.new_hour()
        return {"budget": dict(ga4.budget), "consumed": ga4.consumed()}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serves the emulated GA4 property until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description="backlog-sync's emulated Google Analytics 4 property")
    parser.add_argument("--port", type=int, default=8084)
    parser.add_argument("--today", type=date.fromisoformat, default=date(2026, 12, 1))
    args = parser.parse_args(argv)
    print(f"emulated GA4 property {PROPERTY_ID} on http://127.0.0.1:{args.port} "  # noqa: T201
          f"(today {args.today}; anonymous access)", flush=True)
    uvicorn.run(create_app(today=args.today), host="127.0.0.1", port=args.port, log_level="warning",
                access_log=False)


if __name__ == "__main__":
    main()
