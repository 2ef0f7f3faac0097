"""Asana connector on the official `asana` SDK v5: the tasks of configured projects, incremental by the events API.

The SDK talks urllib3, not requests, so `make_session` cannot equip it. Every SDK call goes through
`ApiClient.rest_client.request`; the connector replaces that client with `PolicyRESTClient`, whose `request`
runs each attempt under the project's one policy (`connectors.base.call_with_policy`: rate limiter, call
observers, the STATUS_ACTIONS table through `error_for_status`, `run_with_retry` honouring Retry-After) with a
timeout on every call, and the SDK's own urllib3 retries turned off. On top, at most 50 reads and 15 writes are
in flight per token across the process (Asana's concurrency limits; `token_slots`), and the per-minute limiter,
shared per token too, follows the plan
(150 free, 1,500 paid).

Reading. A project's tasks come from GET /projects/{gid}/tasks with the opt_fields the mapping needs,
100 a page, through the SDK's list methods with full_payload=True: the connector follows `next_page.offset`
itself (`_paged`), through a Paginator, so a server repeating an offset stops the sync instead of looping (the
SDK's PageIterator would follow it forever); each page is handed on as soon as it arrives (one page in memory).

Incremental sync. The cursor is a small JSON document: per project, the events sync token and when it was
taken. A project without a token is read in full; the token is taken *before* that read (GET /events without
`sync` answers 412 with a fresh token), so changes made during the read come as events next time. With a
token, GET /events?resource=<project>&sync=<token> (paged by has_more) names the tasks that changed, were
added, removed from the project or deleted; changed ones are read again (one by one, or by a modified_since
read of the project when there are many), deleted ones leave the backlog, and a task removed from the project
leaves it unless it is still in another configured project. An expired token (412 "Sync token invalid or too
old") is logged and followed by a modified_since read of the project from the stored time minus an overlap,
with the fresh token from the 412 stored for next time.
"""

from __future__ import annotations

import json
import logging
import threading
from collections import deque
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

import asana
import urllib3
from asana import rest

from connectors.asana_webhooks import gid_of, parse_webhook, verify_webhook
from connectors.base import (
    DEFAULT_TIMEOUT,
    Answer,
    AuthError,
    ConnectorError,
    FatalError,
    FullReadListing,
    Page,
    Paginator,
    RateLimiter,
    RetryPolicy,
    SkippableError,
    WebhookEvent,
    call_with_policy,
    credential_fingerprint,
    with_last,
)

log = logging.getLogger("backlog_sync.connectors.asana")

VENDOR = "asana"
PLAN_REQUESTS_PER_MINUTE = {"free": 150, "paid": 1500}
MAX_READS_IN_FLIGHT = 50  # Asana's concurrency limits per token
MAX_WRITES_IN_FLIGHT = 15
RATE_WINDOW_SECONDS = 61.0  # a minute, plus a second of margin for requests the network reorders
PAGE_LIMIT = 100
FETCH_ONE_BY_ONE = 50  # more changed tasks than this in a project: one modified_since read instead
OVERLAP = timedelta(minutes=5)  # modified_since windows overlap: our clock and Asana's differ a little
WRITE_METHODS = {"POST", "PUT", "PATCH", "DELETE"}

TASK_FIELDS = ",".join((
    "gid", "name", "notes", "permalink_url", "completed", "completed_at", "created_at", "modified_at", "due_on",
    "assignee.name", "tags.name", "memberships.project.gid", "memberships.project.name",
    "memberships.section.gid", "memberships.section.name",
    "custom_fields.gid", "custom_fields.name", "custom_fields.resource_subtype", "custom_fields.number_value",
    "custom_fields.text_value", "custom_fields.enum_value.name", "custom_fields.display_value",
))
STORY_FIELDS = "resource_subtype,text,created_at"
EVENT_FIELDS = "action,change.field,change.action,change.new_value,created_at,parent,resource,type"
FIELD_SETTING_FIELDS = ("custom_field.gid,custom_field.name,custom_field.resource_subtype,custom_field.precision,"
                        "custom_field.enum_options.name")
WEBHOOK_FILTERS = [{"resource_type": "task", "action": action}
                   for action in ("added", "changed", "removed", "deleted", "undeleted")]


def plan_requests_per_minute(plan: str, override: int | None = None) -> int:
    """Requests per minute per token for a plan (150 free, 1,500 paid); `override` wins when given."""
    if override is not None:
        return int(override)
    if plan not in PLAN_REQUESTS_PER_MINUTE:
        raise FatalError(f"asana: unknown plan {plan!r} (free or paid)", vendor=VENDOR)
    return PLAN_REQUESTS_PER_MINUTE[plan]


_slots_lock = threading.Lock()
_token_slots: dict[str, tuple[threading.BoundedSemaphore, threading.BoundedSemaphore]] = {}


def token_slots(token: str) -> tuple[threading.BoundedSemaphore, threading.BoundedSemaphore]:
    """The process-wide (reads, writes) in-flight slots of one token: Asana's concurrency limits count per token,
    so every connector (every source) using the token shares them, as they share its rate limiter."""
    key = credential_fingerprint(token)  # the token itself is not kept as a key
    with _slots_lock:
        if key not in _token_slots:
            _token_slots[key] = (threading.BoundedSemaphore(MAX_READS_IN_FLIGHT),
                                 threading.BoundedSemaphore(MAX_WRITES_IN_FLIGHT))
        return _token_slots[key]


class PolicyRESTClient(rest.RESTClientObject):
    """The SDK's urllib3 client with the project's one HTTP policy around every request it makes."""

    def __init__(
        self,
        configuration: asana.Configuration,
        *,
        policy: RetryPolicy,
        limiter: RateLimiter | None,
        timeout: tuple[float, float],
        reads: threading.BoundedSemaphore,
        writes: threading.BoundedSemaphore,
    ) -> None:
        super().__init__(configuration, maxsize=MAX_READS_IN_FLIGHT)
        self.policy = policy
        self.limiter = limiter
        self.timeout = timeout
        self.reads = reads
        self.writes = writes
        self.calls = 0
        self.retries = 0

    def request(self, method, url, query_params=None, headers=None, body=None, post_params=None,  # noqa: ANN001
                _preload_content=True, _request_timeout=None):  # noqa: ANN001
        method = method.upper()
        # The SDK passes no timeout unless asked; no call is ever made without one.
        timeout = _request_timeout or self.timeout
        where = f"{method} {url}"
        # A slot is held only while a request is on the wire, not while it waits for the limiter or a retry.
        slots = self.writes if method in WRITE_METHODS else self.reads

        def send() -> Answer:
            self.calls += 1
            try:
                with slots:
                    response = super(PolicyRESTClient, self).request(
                        method, url, query_params=query_params, headers=dict(headers or {}), body=body,
                        post_params=post_params, _preload_content=_preload_content, _request_timeout=timeout)
            except rest.ApiException as exc:
                if not exc.status:  # the SDK's own refusal (TLS failure, unbuildable request): not an answer
                    raise FatalError(f"asana: {where}: {exc.reason}", vendor=VENDOR) from exc
                return Answer(status=int(exc.status), headers=exc.headers, body=exc.body)
            return Answer(status=int(response.status), headers=response.getheaders(), result=response)

        def count_retry(_attempt: int, _wait: float, _exc: ConnectorError) -> None:
            self.retries += 1

        return call_with_policy(send, vendor=VENDOR, where=where, policy=self.policy, limiter=self.limiter,
                                connection_errors=(urllib3.exceptions.HTTPError,), on_retry=count_retry)


def _now() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo else moment.replace(tzinfo=UTC)


def read_cursor(cursor: str | None) -> dict[str, dict[str, Any]]:
    """The per-project state in a stored cursor ({project gid: {"sync": token, "at": iso time}})."""
    if not cursor:
        return {}
    try:
        document = json.loads(cursor)
    except (TypeError, json.JSONDecodeError):
        log.warning("asana: the stored cursor is not JSON; reading every project in full")
        return {}
    projects = document.get("projects") if isinstance(document, dict) else None
    if not isinstance(projects, dict):
        log.warning("asana: the stored cursor has no per-project state; reading every project in full")
        return {}
    return {str(gid): dict(entry) for gid, entry in projects.items() if isinstance(entry, dict)}


def write_cursor(state: dict[str, dict[str, Any]]) -> str:
    return json.dumps({"projects": state}, sort_keys=True, separators=(",", ":"))


class AsanaConnector:
    kind: ClassVar[str] = "asana"
    primary_key: ClassVar[str] = "gid"
    replication_key: ClassVar[str] = "modified_at"
    page_size: ClassVar[int] = PAGE_LIMIT

    def __init__(
        self,
        *,
        base_url: str,
        token: str,
        projects: list[str],
        policy: RetryPolicy | None = None,
        limiter: RateLimiter | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
        score_field: str | None = None,
    ) -> None:
        self.score_field = score_field  # write_back.score_field: its precision must hold a score's 2 decimals
        self.projects = [str(p).strip() for p in dict.fromkeys(projects) if str(p).strip()]
        if not self.projects:
            raise FatalError("asana: no projects are configured; give their gids under 'projects'", vendor=VENDOR)
        self.base_url = base_url.rstrip("/")
        configuration = asana.Configuration()
        configuration.host = self.base_url
        configuration.access_token = token
        configuration.retry_strategy = False  # one retry policy: ours, in PolicyRESTClient
        self._client = asana.ApiClient(configuration)
        reads, writes = token_slots(token)
        self.transport = PolicyRESTClient(
            configuration, policy=policy or RetryPolicy(), limiter=limiter, timeout=timeout,
            reads=reads, writes=writes)
        self._client.rest_client = self.transport
        self._tasks = asana.TasksApi(self._client)
        self._events = asana.EventsApi(self._client)
        self._projects_api = asana.ProjectsApi(self._client)
        self._field_settings = asana.CustomFieldSettingsApi(self._client)
        self._stories = asana.StoriesApi(self._client)
        self._webhooks = asana.WebhooksApi(self._client)
        self._users = asana.UsersApi(self._client)
        self._listed = FullReadListing()  # the gids a full read just saw, for the reconcile that follows it

    @property
    def calls(self) -> int:
        """HTTP attempts made, for benchmarks and tests."""
        return self.transport.calls

    # -- metadata --------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Reads the projects (name, workspace) and their custom fields (gid -> name, type, precision, options)."""
        projects: dict[str, Any] = {}
        fields: dict[str, Any] = {}
        for project_gid in self.projects:
            try:
                project = self._projects_api.get_project(project_gid,
                                                         {"opt_fields": "name,workspace.gid,permalink_url"})
            except SkippableError as exc:
                if exc.status not in (400, 404):
                    raise
                # A gid that is wrong or of a deleted project: retrying cannot help, the config must change.
                raise FatalError(f"asana: project {project_gid!r} (sources[].projects) cannot be read with this "
                                 f"token: HTTP {exc.status}; check the project gid and that the token's user can "
                                 "see the project", status=exc.status, vendor=VENDOR) from exc
            if not isinstance(project, dict):
                raise ConnectorError(f"asana: project {project_gid} answered without data", vendor=VENDOR)
            projects[project_gid] = {"name": project.get("name"),
                                     "workspace": (project.get("workspace") or {}).get("gid"),
                                     "url": project.get("permalink_url")}
            for page in self._paged(self._field_settings.get_custom_field_settings_for_project, project_gid,
                                    what=f"custom field settings of project {project_gid}",
                                    opts={"opt_fields": FIELD_SETTING_FIELDS}):
                for setting in page:
                    custom = (setting or {}).get("custom_field") or {}
                    if not custom.get("gid"):
                        continue
                    fields[str(custom["gid"])] = {
                        "name": custom.get("name"),
                        "type": custom.get("resource_subtype"),
                        "precision": custom.get("precision"),
                        "options": [o.get("name") for o in custom.get("enum_options") or [] if isinstance(o, dict)],
                        "projects": sorted({*fields.get(str(custom["gid"]), {}).get("projects", []), project_gid}),
                    }
        self._check_score_precision(fields)
        return {"base_url": self.base_url, "projects": projects, "configured_projects": list(self.projects),
                "fields": fields}

    def _check_score_precision(self, fields: dict[str, Any]) -> None:
        """Asana rounds a stored number to its field's precision: a score (2 decimals) in a field with fewer
        would come back different and be written again on every sync, so such a config is refused."""
        if not self.score_field:
            return
        wanted = self.score_field.casefold()
        for gid, meta in fields.items():
            if str(meta.get("name") or "").casefold() != wanted or meta.get("type") != "number":
                continue
            precision = meta.get("precision")
            if isinstance(precision, int) and precision < 2:
                raise FatalError(
                    f"asana: the score field {meta.get('name')!r} (gid {gid}, write_back.score_field) has precision "
                    f"{precision}, and Asana rounds stored numbers to it, so every sync would rewrite the score; "
                    "set the field's decimal places to 2 or more in Asana, or name another number field in "
                    "write_back.score_field", vendor=VENDOR)

    # -- reading ---------------------------------------------------------------------------------

    def pull(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        """Yields pages of tasks changed since the cursor (every task of every project when full or new)."""
        state = {} if full else read_cursor(cursor)
        state = {gid: entry for gid, entry in state.items() if gid in self.projects}
        seen: set[str] = set()  # a task in two configured projects is one item, read once per run
        if full:
            self._listed.begin()
        else:
            self._listed.forget()
        for project_gid in self.projects:
            entry = state.get(project_gid) or {}
            pages = (self._read_changes(project_gid, entry, state) if entry.get("sync")
                     else self._read_project(project_gid, state))
            for page in pages:
                records = [r for r in page.records if str(r.get("gid")) not in seen]
                seen.update(str(r.get("gid")) for r in records)
                if full:
                    self._listed.add(gid for gid in map(gid_of, records) if gid is not None)
                yield Page(records=records, cursor=page.cursor, deleted_ids=page.deleted_ids)
        if full:
            # Every task of every project was just read: the reconcile that follows uses these gids instead of
            # paging the projects a second time (once, and only right after).
            self._listed.finish()

    def _read_project(self, project_gid: str, state: dict[str, dict[str, Any]]) -> Iterator[Page]:
        """Reads all tasks of a project; the sync token is taken first, so nothing changed during the read is lost."""
        token = self._fresh_sync_token(project_gid)
        started = _now()
        pages = with_last(self._paged(self._tasks.get_tasks_for_project, project_gid,
                                      what=f"tasks of project {project_gid}", opts={"opt_fields": TASK_FIELDS}))
        yield from self._pages_with_cursor(pages, project_gid, token, started, state)

    def _read_modified_since(self, project_gid: str, since: datetime, token: str, started: datetime,
                             state: dict[str, dict[str, Any]], deleted: list[str] | None = None) -> Iterator[Page]:
        pages = with_last(self._paged(
            self._tasks.get_tasks, what=f"tasks of project {project_gid} modified since {_iso(since)}",
            opts={"project": project_gid, "modified_since": _iso(since), "opt_fields": TASK_FIELDS}))
        yield from self._pages_with_cursor(pages, project_gid, token, started, state, deleted=deleted)

    @staticmethod
    def _pages_with_cursor(pages: Iterator[tuple[list[Any], bool]], project_gid: str, token: str, started: datetime,
                           state: dict[str, dict[str, Any]], deleted: list[str] | None = None) -> Iterator[Page]:
        """Hands each page on as it arrives; the last carries the cursor with the project's new token."""
        for page, last in pages:
            cursor = None
            removed: list[str] = []
            if last:
                state[project_gid] = {"sync": token, "at": _iso(started)}
                cursor = write_cursor(state)
                removed = list(deleted or [])
            yield Page(records=[task for task in page if isinstance(task, dict)], cursor=cursor, deleted_ids=removed)

    def _paged(self, call: Any, *args: Any, what: str, opts: dict[str, Any]) -> Iterator[list[Any]]:
        """Reads a collection one page at a time: `call(*args, opts, full_payload=True)` is an SDK list method.

        The SDK's own iteration (PageIterator.items()) flattens pages and follows any offset forever; the full
        payload gives each page with its next_page, whose offset goes through a Paginator (loop detection)."""
        paginator = Paginator(VENDOR)
        while not paginator.finished:
            page_opts = {**opts, "limit": PAGE_LIMIT}
            if paginator.token:
                page_opts["offset"] = paginator.token
            body = call(*args, page_opts, full_payload=True)
            if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                raise ConnectorError(f"asana: {what}: a page came without a 'data' list", vendor=VENDOR)
            next_page = body.get("next_page")
            paginator.advance(next_page.get("offset") if isinstance(next_page, dict) else None)
            yield body["data"]

    def _fresh_sync_token(self, project_gid: str) -> str:
        """Asks for events without a token: Asana answers 412 with a fresh one."""
        try:
            body = self._events.get_events(project_gid, {"opt_fields": EVENT_FIELDS}, full_payload=True)
        except SkippableError as exc:
            if exc.status == 412:
                return self._token_from_412(exc, project_gid)
            raise
        token = (body or {}).get("sync") if isinstance(body, dict) else None
        if not token:
            raise ConnectorError(f"asana: GET /events for project {project_gid} gave no sync token", vendor=VENDOR)
        return str(token)

    @staticmethod
    def _token_from_412(exc: SkippableError, project_gid: str) -> str:
        try:
            token = json.loads(exc.body or "").get("sync")
        except (json.JSONDecodeError, AttributeError):
            token = None
        if not token:
            raise ConnectorError(f"asana: GET /events for project {project_gid} answered 412 without a sync token",
                                 vendor=VENDOR) from exc
        return str(token)

    def _read_changes(self, project_gid: str, entry: dict[str, Any],
                      state: dict[str, dict[str, Any]]) -> Iterator[Page]:
        started = _now()
        token = str(entry["sync"])
        changed: dict[str, None] = {}
        deleted: dict[str, None] = {}
        removed: dict[str, None] = {}
        earliest: datetime | None = None
        paginator = Paginator(VENDOR)
        try:
            while True:
                body = self._events.get_events(project_gid, {"sync": token, "opt_fields": EVENT_FIELDS},
                                               full_payload=True)
                if not isinstance(body, dict) or not isinstance(body.get("data"), list):
                    raise ConnectorError(f"asana: GET /events for project {project_gid} answered without data",
                                         vendor=VENDOR)
                for event in body["data"]:
                    gid, action = _task_event(event)
                    if gid is None:
                        continue
                    at = _parse_time(event.get("created_at"))
                    if at is not None and (earliest is None or at < earliest):
                        earliest = at
                    if action == "deleted":
                        deleted[gid] = None
                        changed.pop(gid, None)
                    elif action == "removed" and gid_of(event.get("parent")) == project_gid:
                        removed[gid] = None
                    else:
                        changed[gid] = None
                        deleted.pop(gid, None)
                token = str(body.get("sync") or token)
                paginator.advance(token if body.get("has_more") else None)
                if paginator.finished:
                    break
        except SkippableError as exc:
            if exc.status != 412:
                raise
            fresh = self._token_from_412(exc, project_gid)
            since = _parse_time(entry.get("at"))
            if since is None:
                log.warning("asana: the sync token of project %s is invalid or too old and the cursor holds no "
                            "time; reading the project in full", project_gid)
                yield from self._read_project(project_gid, state)
                return
            log.warning("asana: the sync token of project %s is invalid or too old; reading the tasks modified "
                        "since %s instead (the next run uses the fresh token)", project_gid, _iso(since - OVERLAP))
            yield from self._read_modified_since(project_gid, since - OVERLAP, fresh, started, state)
            return

        gone = list(deleted)
        if len(changed) > FETCH_ONE_BY_ONE and earliest is not None:
            # Many changes: one paged read of the project beats a call per task. Tasks removed from the project
            # are not in that read: they are checked one by one below.
            records_removed = self._still_in_scope(list(removed))
            gone += [gid for gid in removed if gid not in records_removed]
            yield from self._read_modified_since(project_gid, earliest - OVERLAP, token, started, state,
                                                 deleted=gone)
            return
        found = self._fetch_tasks([*changed, *removed])
        in_scope = {gid: task for gid, task in found.items() if task is not None and self._in_scope(task)}
        # A task that went (deleted, or no longer in any configured project) leaves the backlog.
        gone += [gid for gid in [*changed, *removed] if gid not in in_scope]
        state[project_gid] = {"sync": token, "at": _iso(started)}
        yield Page(records=list(in_scope.values()), cursor=write_cursor(state), deleted_ids=gone)

    def _still_in_scope(self, gids: list[str]) -> set[str]:
        found = self._fetch_tasks(gids)
        return {gid for gid, task in found.items() if task is not None and self._in_scope(task)}

    def _in_scope(self, task: dict[str, Any]) -> bool:
        memberships = task.get("memberships")
        if not isinstance(memberships, list):
            return True  # no memberships asked for or given: trust the read that found it
        return any(gid_of((m or {}).get("project")) in self.projects for m in memberships if isinstance(m, dict))

    def _fetch_tasks(self, gids: list[str]) -> dict[str, dict[str, Any] | None]:
        """Reads tasks by gid; a task that no longer exists (404) maps to None."""
        found: dict[str, dict[str, Any] | None] = {}
        credential_checked = False
        for gid in dict.fromkeys(gids):
            try:
                task = self._tasks.get_task(gid, {"opt_fields": TASK_FIELDS})
            except SkippableError as exc:
                if exc.status == 404:
                    found[gid] = None
                    continue
                raise
            except AuthError as exc:
                # 401/403 on one task: a task the token cannot see, or a dead token. One cheap call tells which;
                # a task out of sight is out of scope (left out), a dead token pauses the source.
                if not credential_checked:
                    try:
                        self._users.get_user("me", {"opt_fields": "gid"})
                    except AuthError:
                        raise exc from None
                    credential_checked = True
                log.warning("asana: task %s cannot be read with this token (HTTP %s) although the token works; "
                            "it is left out as out of scope", gid, exc.status)
                found[gid] = None
                continue
            found[gid] = task if isinstance(task, dict) else None
        return found

    def fetch(self, external_ids: list[str]) -> list[dict[str, Any]]:
        """Reads the given tasks; deleted ones and ones no longer in a configured project are left out."""
        found = self._fetch_tasks([str(i) for i in external_ids if str(i).strip()])
        return [task for task in found.values() if task is not None and self._in_scope(task)]

    def list_ids(self) -> Iterator[str]:
        """Yields the gid of every task in the configured projects (gids only, 100 a page), or the gids a full
        read has just seen."""
        listed = self._listed.take()
        if listed is not None:
            yield from listed
            return
        seen: set[str] = set()
        for project_gid in self.projects:
            for page in self._paged(self._tasks.get_tasks_for_project, project_gid,
                                    what=f"task ids of project {project_gid}", opts={"opt_fields": "gid"}):
                for task in page:
                    gid = gid_of(task)
                    if gid is not None and gid not in seen:
                        seen.add(gid)
                        yield gid

    # -- writing ---------------------------------------------------------------------------------

    def update_item(self, external_id: str, payload: dict[str, Any]) -> None:
        """PUT /tasks/{gid} with {"data": {"custom_fields": {...}}} (built by mappings.asana.owned_field_payload)."""
        self._tasks.update_task(payload, external_id, {"opt_fields": "gid"})

    def add_comment(self, external_id: str, body: Any) -> None:
        """POST /tasks/{gid}/stories with {"data": {"text": ...}} (built by mappings.asana.comment_body)."""
        self._stories.create_story_for_task(body, external_id, {"opt_fields": "gid"})

    def recent_comments(self, external_id: str, limit: int) -> list[Any]:
        """The texts of a task's latest comments, newest first: GET /tasks/{gid}/stories, comment stories only.

        Asana's published spec pages a task's stories oldest first with no filter, so every page is read and
        only the comments (resource_subtype comment_added) kept; system stories (field changes, moves) are not."""
        latest: deque[str] = deque(maxlen=max(1, limit))
        try:
            for page in self._paged(self._stories.get_stories_for_task, str(external_id),
                                    what=f"stories of task {external_id}", opts={"opt_fields": STORY_FIELDS}):
                for story in page:
                    if (isinstance(story, dict) and story.get("resource_subtype") == "comment_added"
                            and isinstance(story.get("text"), str)):
                        latest.append(story["text"])
        except SkippableError as exc:
            if exc.status == 404:
                return []  # the task is gone: it has no comments to compare with
            raise  # (a 401/403 is an AuthError, raised as on any other call)
        return list(reversed(latest))[:max(0, limit)]

    # -- webhooks --------------------------------------------------------------------------------

    def register_webhook(self, callback_url: str) -> list[str]:
        """Creates one webhook per project, each calling back on `<callback_url>/<project gid>`.

        Asana performs the handshake with the callback during the POST: the daemon must be reachable at the URL.
        """
        ids = []
        base = callback_url.rstrip("/")
        for project_gid in self.projects:
            body = {"data": {"resource": project_gid, "target": f"{base}/{project_gid}", "filters": WEBHOOK_FILTERS}}
            created = self._webhooks.create_webhook(body, {"opt_fields": "gid,active,target,resource"})
            gid = gid_of(created) if isinstance(created, dict) else None
            if gid is None:
                raise ConnectorError(f"asana: POST /webhooks for project {project_gid} answered without a gid",
                                     vendor=VENDOR)
            ids.append(gid)
        return ids

    def verify_webhook(self, *, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool:
        return verify_webhook(headers=headers, body=body, url=url, secret=secret)

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return parse_webhook(body)

    def close(self) -> None:
        self.transport.pool_manager.clear()


def _task_event(event: Any) -> tuple[str | None, str | None]:
    """The task an event is about and what happened to it (stories refresh their parent task)."""
    if not isinstance(event, dict):
        return None, None
    resource = event.get("resource") if isinstance(event.get("resource"), dict) else {}
    action = event.get("action") if isinstance(event.get("action"), str) else None
    if resource.get("resource_type") == "task":
        return gid_of(resource), action
    parent = event.get("parent") if isinstance(event.get("parent"), dict) else {}
    if resource.get("resource_type") == "story" and parent.get("resource_type") == "task":
        return gid_of(parent), "changed"
    return None, None
