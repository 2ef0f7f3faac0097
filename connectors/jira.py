"""Jira connector on the `jira` library (pycontribs): Cloud (email + API token) or Data Center (bearer PAT).

Data Center has no /rest/api/3: it is read through /rest/api/2/search paged by startAt (the library's
search_issues), and its descriptions and comments are wiki text rather than ADF.

On Cloud, issues come from /rest/api/3/search/jql, page by page by nextPageToken until isLast, as raw JSON
(`json_result=True`): the library's Issue objects cost about 3x the client CPU and half as much memory
again (bench/jira_connector_pull.py).
Only one page is held at a time. The removed /rest/api/3/search is never called.

The library gets the project's one HTTP policy: its own retries are off (max_retries=0) and its session is
equipped by `make_session`, so timeouts, the rate limiter, Retry-After and typed errors apply to every call.
Three calls go through that same session directly, for reasons of the library's:
- issue edits: `Issue.update()` needs an Issue object, which costs a GET of the whole issue per write;
- comments: `JIRA.add_comment()` sends a plain string, which REST v3 refuses (it wants ADF);
- ranking: `JIRA.rank()` moves one issue per call; the Agile endpoint moves up to 50.

Incremental sync. The cursor is the largest `updated` timestamp read so far (UTC, millisecond precision),
but never later than the server's time when the search began (serverInfo.serverTime): pages are ordered by
`updated ASC`, so a cursor stored with a page covers everything before it, and an issue edited during the
scan (after its page was read) has an `updated` past that start, so the next run reads it again. The last
page moves the cursor up to the start even when nothing changed, which keeps the next window short. Jira reads
JQL dates in the API user's time zone with minute precision, so the lower bound is converted to that zone
(from /myself) and floored to the minute, minus the configured overlap; records older than the exact bound
are dropped here, so a minute's rounding never re-reads whole pages of unchanged issues.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import requests
from jira import JIRA, JIRAError

from connectors.base import (
    DEFAULT_TIMEOUT,
    ConnectorError,
    FatalError,
    Page,
    Paginator,
    RateLimiter,
    RetryPolicy,
    SkippableError,
    WebhookEvent,
    check_response,
    make_session,
)
from connectors.jira_webhooks import parse_webhook, verify_webhook

log = logging.getLogger("backlog_sync.connectors.jira")

VENDOR = "jira"
RANK_BATCH = 50  # PUT /rest/agile/1.0/issue/rank takes at most 50 issues
FETCH_BATCH = 100
IDS_PAGE = 5000  # search/jql returns up to 5000 issues a page when only ids are asked for
_ORDER_BY = re.compile(r"\border\s+by\b", re.IGNORECASE)


def parse_jira_time(value: Any) -> datetime | None:
    """Reads Jira's "2026-11-24T09:15:02.123+0000" (or ISO 8601) as an aware UTC datetime."""
    if not isinstance(value, str) or not value:
        return None
    text = value.strip()
    if re.search(r"[+-]\d{4}$", text):
        text = text[:-2] + ":" + text[-2:]
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def scope_without_order(jql: str) -> str:
    """Drops a trailing ORDER BY from the configured scope: the connector orders by `updated` itself."""
    match = _ORDER_BY.search(jql)
    return jql[: match.start()].strip() if match else jql.strip()


def jql_lower_bound(cursor: datetime, overlap: timedelta, time_zone: ZoneInfo) -> str:
    """The `updated >=` value for an incremental search: in the user's zone, floored to the minute."""
    local = (cursor - overlap).astimezone(time_zone)
    return local.strftime("%Y-%m-%d %H:%M")


class JiraConnector:
    kind: ClassVar[str] = "jira"
    primary_key: ClassVar[str] = "id"
    replication_key: ClassVar[str] = "updated"
    page_size: ClassVar[int] = 100

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        jql: str,
        deployment: str = "cloud",
        email: str | None = None,
        board_id: int | None = None,
        page_size: int = 100,
        overlap_minutes: int = 10,
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        if deployment not in ("cloud", "datacenter"):
            raise FatalError(f"jira: unknown deployment {deployment!r} (cloud or datacenter)", vendor=VENDOR)
        if deployment == "cloud" and not email:
            raise FatalError("jira: a Cloud site needs the account's email with its API token", vendor=VENDOR)
        self.base_url = base_url.rstrip("/")
        self.scope = scope_without_order(jql)
        if not self.scope:
            raise FatalError("jira: the JQL scope is empty; give one such as 'project = MKT'", vendor=VENDOR)
        self.board_id = board_id
        self.deployment = deployment
        self.page_size = max(1, min(int(page_size), 100))
        self.overlap = timedelta(minutes=overlap_minutes)
        auth: dict[str, Any] = (
            {"basic_auth": (email, token)} if deployment == "cloud" else {"token_auth": token}
        )
        try:
            # get_server_info=False: nothing is called until the first sync, so a down Jira cannot stop start-up.
            self._jira = JIRA(
                server=self.base_url,
                # Data Center serves REST v2 only (no search/jql: /rest/api/2/search paged by startAt).
                options={"rest_api_version": "3" if deployment == "cloud" else "2", "agile_rest_path": "agile",
                         "check_update": False},
                get_server_info=False,
                max_retries=0,
                timeout=timeout[1],
                **auth,
            )
        except JIRAError as exc:  # pragma: no cover - the constructor makes no calls with these options
            raise _translate(exc) from exc
        self._session: requests.Session = self._jira._session
        make_session(vendor=VENDOR, policy=policy, limiter=limiter, timeout=timeout, session=self._session)
        self._time_zone: ZoneInfo | None = None
        self.calls = 0  # search calls, for benchmarks

    # -- metadata --------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Reads what the mapping needs: the site's fields (id -> name and schema) and the user's time zone."""
        if self._jira.deploymentType is None:
            self._server_info()  # once: pull() reads serverInfo for its start time on every run anyway
        me = self._call(self._jira.myself)
        self._time_zone = _zone(me.get("timeZone"))
        fields = self._call(self._jira.fields)
        # Hand the list to the library too, so its search helpers do not read /field a second time.
        self._jira._fields_cache_value = {
            clause: f["id"] for f in fields if isinstance(f, dict) for clause in f.get("clauseNames") or []
        }
        return {
            "base_url": self.base_url,
            "deployment_type": self._jira.deploymentType,
            "time_zone": str(self._time_zone),
            "fields": {
                str(f["id"]): {"name": f.get("name"), "schema": f.get("schema") or {}, "custom": f.get("custom")}
                for f in fields
                if isinstance(f, dict) and f.get("id")
            },
        }

    def _server_info(self) -> dict[str, Any]:
        info = self._call(self._jira.server_info)
        # The library answers None from Cloud-only calls (search/jql) until it knows the deployment type.
        self._jira.deploymentType = info.get("deploymentType")
        return info

    def time_zone(self) -> ZoneInfo:
        if self._time_zone is None:
            self._time_zone = _zone(self._call(self._jira.myself).get("timeZone"))
        return self._time_zone

    # -- reading ---------------------------------------------------------------------------------

    def pull(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        """Yields pages of issues changed since the cursor (all issues in scope when full or no cursor)."""
        since = None if full else parse_jira_time(cursor)
        if cursor and since is None and not full:
            log.warning("jira: stored cursor %r is not a timestamp; reading everything", cursor)
        jql = f"({self.scope}) ORDER BY updated ASC, id ASC"
        bound: datetime | None = None
        if since is not None:
            bound = since - self.overlap
            jql = (f'({self.scope}) AND updated >= "{jql_lower_bound(since, self.overlap, self.time_zone())}" '
                   "ORDER BY updated ASC, id ASC")
        # Everything updated after the search starts has updated >= this server time, so the final cursor
        # may move up to it even when nothing changed: the window stays short and re-reads stay small.
        started = parse_jira_time(self._server_info().get("serverTime"))
        newest = since
        paginator = Paginator(VENDOR)
        while not paginator.finished:
            body = self._search(jql, paginator.token, self.page_size, ["*all"])
            issues = body.get("issues")
            if not isinstance(issues, list):
                raise ConnectorError("jira: search/jql answered without an 'issues' list", vendor=VENDOR)
            records = []
            for issue in issues:
                updated = parse_jira_time(((issue or {}).get("fields") or {}).get("updated"))
                if bound is not None and updated is not None and updated < bound:
                    continue  # inside the minute JQL rounded down to, but read before
                if updated is not None and (newest is None or updated > newest):
                    newest = updated
                records.append(issue)
            paginator.advance(None if body.get("isLast", True) else body.get("nextPageToken"))
            yield Page(records=records, cursor=_format_cursor(_page_cursor(newest, started, paginator.finished)))

    def list_ids(self) -> Iterator[str]:
        """Yields the id of every issue in scope (ids only: 5000 a page)."""
        paginator = Paginator(VENDOR)
        while not paginator.finished:
            body = self._search(f"({self.scope}) ORDER BY id ASC", paginator.token, IDS_PAGE, ["id"])
            for issue in body.get("issues") or []:
                if isinstance(issue, dict) and issue.get("id") is not None:
                    yield str(issue["id"])
            paginator.advance(None if body.get("isLast", True) else body.get("nextPageToken"))

    def fetch(self, external_ids: list[str]) -> list[dict[str, Any]]:
        """Reads the given issues (still in scope) by id; deleted or out-of-scope ones are left out."""
        found: list[dict[str, Any]] = []
        ids = [i for i in dict.fromkeys(str(x) for x in external_ids) if i.isdigit()]
        for start in range(0, len(ids), FETCH_BATCH):
            chunk = ids[start : start + FETCH_BATCH]
            jql = f"({self.scope}) AND id in ({', '.join(chunk)}) ORDER BY id ASC"
            paginator = Paginator(VENDOR)
            while not paginator.finished:
                body = self._search(jql, paginator.token, FETCH_BATCH, ["*all"])
                found.extend(issue for issue in body.get("issues") or [] if isinstance(issue, dict))
                paginator.advance(None if body.get("isLast", True) else body.get("nextPageToken"))
        return found

    def recent_comments(self, external_id: str, limit: int) -> list[Any]:
        """The bodies of an issue's latest comments, newest first (ADF on Cloud, wiki text on Data Center), from
        the comment field of the issue record `fetch` reads (one search call; an issue out of scope has none)."""
        found = self.fetch([external_id])
        fields = found[0].get("fields") if found and isinstance(found[0].get("fields"), dict) else {}
        page = fields.get("comment") if isinstance(fields.get("comment"), dict) else {}
        comments = page.get("comments") if isinstance(page.get("comments"), list) else []
        bodies = [c["body"] for c in comments if isinstance(c, dict) and c.get("body") is not None]
        return list(reversed(bodies))[:max(0, limit)]

    def _search(self, jql: str, token: str | None, max_results: int, fields: list[str]) -> dict[str, Any]:
        self.calls += 1
        if self._jira.deploymentType is None:
            self._server_info()
        if self.deployment == "datacenter":
            return self._search_v2(jql, token, max_results, fields)
        body = self._call(self._jira.enhanced_search_issues, jql, nextPageToken=token, maxResults=max_results,
                          fields=list(fields), json_result=True, use_post=True)
        if not isinstance(body, dict):
            raise ConnectorError(f"jira: search/jql answered {type(body).__name__}, not an object", vendor=VENDOR)
        return body

    def _search_v2(self, jql: str, token: str | None, max_results: int, fields: list[str]) -> dict[str, Any]:
        """Data Center: POST /rest/api/2/search by startAt, answered in search/jql's shape (the next start as the
        token, so the same Paginator notices a server that keeps answering the same page)."""
        start = int(token) if token else 0
        body = self._call(self._jira.search_issues, jql, startAt=start, maxResults=max_results, fields=list(fields),
                          json_result=True, use_post=True)
        if not isinstance(body, dict) or not isinstance(body.get("issues"), list):
            raise ConnectorError("jira: /rest/api/2/search answered without an 'issues' list", vendor=VENDOR)
        issues = body["issues"]
        served_from = body.get("startAt") if isinstance(body.get("startAt"), int) else start
        next_start = served_from + len(issues)
        total = body.get("total") if isinstance(body.get("total"), int) else next_start
        last = not issues or next_start >= total
        return {"issues": issues, "isLast": last, "nextPageToken": None if last else str(next_start)}

    # -- writing ---------------------------------------------------------------------------------

    def update_item(self, external_id: str, payload: dict[str, Any]) -> None:
        """PUT /rest/api/3/issue/{id} with {"fields": {...}} (built by mappings.jira.owned_field_payload)."""
        self._send("put", self._jira._get_url(f"issue/{external_id}"), payload)

    def add_comment(self, external_id: str, body: Any) -> None:
        """POST .../issue/{id}/comment with the body mappings.jira.comment_body built for this deployment."""
        self._send("post", self._jira._get_url(f"issue/{external_id}/comment"), body)

    def rank(self, ordered_ids: list[str]) -> dict[str, str]:
        """Orders the issues as given on the board, 50 at a time after the previous batch's last issue."""
        failures: dict[str, str] = {}
        url = f"{self.base_url}/rest/agile/1.0/issue/rank"
        ids = [str(i) for i in ordered_ids]
        for start in range(1, len(ids), RANK_BATCH):
            batch = ids[start : start + RANK_BATCH]
            body = {"issues": batch, "rankAfterIssue": ids[start - 1]}
            try:
                response = self._send("put", url, body)
            except SkippableError as exc:  # the whole batch was refused (an unknown anchor, say)
                failures.update({issue_id: str(exc) for issue_id in batch})
                continue
            if response.status_code == 207:  # some issues moved, some did not
                for entry in (response.json() or {}).get("entries") or []:
                    if entry.get("status") not in (200, 204):
                        key = str(entry.get("issueId") or entry.get("issueKey"))
                        failures[key] = "; ".join(map(str, entry.get("errors") or ["rank failed"]))
        return failures

    def _send(self, method: str, url: str, body: Any) -> requests.Response:
        """A direct call through the library's own session (same auth, same policy)."""
        try:
            response = self._session.request(method.upper(), url, data=json.dumps(body),
                                             headers={"Content-Type": "application/json"})
        except JIRAError as exc:
            raise _translate(exc) from exc
        return check_response(response, VENDOR)

    # -- webhooks --------------------------------------------------------------------------------

    def verify_webhook(self, *, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool:
        return verify_webhook(headers=headers, body=body, url=url, secret=secret)

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return parse_webhook(body)

    def close(self) -> None:
        self._session.close()

    # -- errors ----------------------------------------------------------------------------------

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except JIRAError as exc:
            raise _translate(exc) from exc
        except ValueError as exc:  # the library could not parse the body as JSON
            raise ConnectorError(f"jira: the answer was not JSON: {exc}", vendor=VENDOR) from exc


def _translate(exc: JIRAError) -> ConnectorError:
    status = exc.status_code
    text = (exc.text or "")[:300]
    message = f"jira: HTTP {status} on {_short_url(exc.url)}: {text}"
    if status == 410:
        return FatalError(message + " (this Jira no longer serves that endpoint)", status=status, vendor=VENDOR)
    if status in (400, 404, 422):
        return SkippableError(message, status=status, vendor=VENDOR)
    return ConnectorError(message, status=status, vendor=VENDOR)


def _short_url(url: str | None) -> str:
    return (url or "?").split("?", 1)[0]


def _zone(name: Any) -> ZoneInfo:
    """The user's zone; Jira answers with an IANA name. An unknown one falls back to UTC, loudly."""
    if isinstance(name, str) and name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            log.warning("jira: the user's time zone %r is unknown here; reading JQL dates as UTC", name)
    return ZoneInfo("UTC")


def _page_cursor(newest: datetime | None, started: datetime | None, last: bool) -> datetime | None:
    """The cursor safe to store with a page. Never past the search's start: an issue edited during the scan
    after its page was read has an `updated` below a later page's records, and must be read again next time.
    After the last page, everything updated before the start has been read: the start is the cursor."""
    if started is None:
        return newest
    if last:
        return started
    return newest if newest is None or newest < started else started


def _format_cursor(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")
