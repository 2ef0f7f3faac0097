"""An emulated Asana workspace over real HTTP: the endpoints backlog-sync uses, shaped as Asana's published OpenAPI
spec says (tests/sandbox/test_asana_sandbox_spec.py validates the responses against it).

Endpoints: GET /projects/{gid}, /projects/{gid}/custom_field_settings, /projects/{gid}/tasks and /tasks?project=
&modified_since= (paged by limit and an opaque offset), GET/PUT /tasks/{gid}, GET and POST /tasks/{gid}/stories
(comments, and the system stories field changes leave),
GET /events (sync tokens: 412 with a fresh token on the first call or an expired one, 100 events a call with
has_more) and POST /webhooks (the handshake with the target happens during the POST; 201 only when the target
echoed X-Hook-Secret). A change to a task is recorded as events and delivered, signed with X-Hook-Signature, to
the webhooks of its projects — our own writes included, as Asana does.

Limits, as Asana enforces them per token: requests per minute (None: off; 150 on a free plan, 1,500 paid) and at
most 50 reads and 15 writes in flight. A request over a limit gets 429 with Retry-After and is counted in
`violations`.

Run it alone with `python -m sandbox.asana --port 8083`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from sandbox.asana_data import CUSTOM_FIELDS, PROJECTS, USERS, SeedTask, generated_task, seed_tasks
from sandbox.common import SandboxState, SlidingWindow, WebhookSender, install_sandbox_plumbing

DEFAULT_TOKEN = "sandbox-asana-token"
WORKSPACE_GID = "1100000000000001"
MAX_LIMIT = 100
EVENTS_PER_CALL = 100
MAX_READS_IN_FLIGHT = 50
MAX_WRITES_IN_FLIGHT = 15
SYNC_INVALID = ("Sync token invalid or too old. If you are attempting to keep resources in sync, you must fetch the "
                "full dataset for this query now and use the new sync token for the next sync.")


def asana_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _errors(status: int, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errors": [{"message": message}]}, status_code=status, headers=headers)


@dataclass
class Task:
    gid: str
    name: str
    notes: str
    projects: dict[str, str]  # project gid -> section gid
    custom_fields: dict[str, Any]  # custom field gid -> value (number, text, or enum option gid)
    tags: list[str]
    assignee: str | None
    due_on: date | None
    completed: bool
    created_at: datetime
    modified_at: datetime
    stories: list[dict[str, Any]] = field(default_factory=list)


class AsanaWorkspace:
    """The workspace's state: projects, sections, custom fields, tasks, events, webhooks. Thread-safe."""

    def __init__(self, *, base_url: str = "http://127.0.0.1", seed: bool = True, token: str = DEFAULT_TOKEN,
                 requests_per_minute: int | None = None, window_seconds: float = 60.0) -> None:
        self.base_url = base_url
        self.window_seconds = window_seconds  # the rate window: a minute, shorter in tests
        self.token = token
        self.lock = threading.RLock()
        self.requests_per_minute = requests_per_minute
        self.violations = 0  # requests refused for going over a limit
        self.max_reads_in_flight = 0
        self.max_writes_in_flight = 0
        self._in_flight = {"read": 0, "write": 0}
        self._window = SlidingWindow(requests_per_minute or 0, window_seconds)
        self._next_gid = 1200000000000000
        self.projects: dict[str, dict[str, Any]] = {}
        self.sections: dict[str, dict[str, Any]] = {}
        self.custom_fields: dict[str, dict[str, Any]] = {}
        self.tasks: dict[str, Task] = {}
        self.events: dict[str, list[dict[str, Any]]] = {}  # project gid -> events, oldest first
        self.sync_tokens: dict[str, tuple[str, int, int]] = {}  # token -> (project, position, generation)
        self.generation = 0
        self.webhooks: list[dict[str, Any]] = []
        self.me = {"gid": "1200000000000999", "name": "Marketing Ops", "email": "ops@example.com"}
        self.hidden_tasks: set[str] = set()  # tasks the token's user cannot see: GET /tasks/{gid} answers 403
        self.webhook_log: list[dict[str, Any]] = []
        self.writes: list[tuple[str, dict[str, Any]]] = []  # (task gid, custom_fields) of every PUT
        self._webhooks: WebhookSender[tuple[dict[str, Any], bytes]] = WebhookSender("asana-webhooks", self._deliver)
        self._webhook_client: httpx.Client | None = None  # the sender thread's only: one connection pool
        for spec in CUSTOM_FIELDS:
            options = [{"gid": self._gid(), "resource_type": "enum_option", "name": name, "enabled": True,
                        "color": "blue"} for name in spec.get("options", [])]
            self.custom_fields[spec["gid"]] = {**spec, "enum_options": options}
        for spec in PROJECTS:
            self.projects[spec["gid"]] = {"gid": spec["gid"], "name": spec["name"], "fields": list(spec["fields"]),
                                          "sections": []}
            for section_name in spec["sections"]:
                section_gid = self._gid()
                self.sections[section_gid] = {"gid": section_gid, "name": section_name, "project": spec["gid"]}
                self.projects[spec["gid"]]["sections"].append(section_gid)
            self.events[spec["gid"]] = []
        if seed:
            for seeded in seed_tasks():
                self.add_task(seeded, notify=False)

    # -- building state ----------------------------------------------------------------------------

    def _gid(self) -> str:
        with self.lock:
            self._next_gid += 1
            return str(self._next_gid)

    def now(self) -> datetime:
        return datetime.now(UTC)

    def field_gid(self, name: str) -> str:
        for gid, spec in self.custom_fields.items():
            if spec["name"] == name:
                return gid
        raise KeyError(f"no custom field named {name!r}")

    def section_gid(self, project_gid: str, name: str) -> str:
        for gid in self.projects[project_gid]["sections"]:
            if self.sections[gid]["name"] == name:
                return gid
        raise KeyError(f"project {project_gid} has no section {name!r}")

    def option_gid(self, field_gid: str, name: str) -> str:
        for option in self.custom_fields[field_gid]["enum_options"]:
            if option["name"] == name:
                return str(option["gid"])
        raise KeyError(f"custom field {field_gid} has no option {name!r}")

    def add_task(self, seeded: SeedTask, *, notify: bool = True) -> Task:
        now = self.now()
        values: dict[str, Any] = {}
        for name, value in seeded.fields.items():
            gid = self.field_gid(name)
            if self.custom_fields[gid]["resource_subtype"] == "enum" and value is not None:
                value = self.option_gid(gid, value)
            values[gid] = value
        task = Task(
            gid=seeded.gid or self._gid(), name=seeded.name, notes=seeded.notes,
            projects={project: self.section_gid(project, section) for project, section in seeded.sections.items()},
            custom_fields=values, tags=list(seeded.tags), assignee=seeded.assignee, due_on=seeded.due_on,
            completed=seeded.completed, created_at=now - timedelta(days=seeded.age_days), modified_at=now)
        with self.lock:
            self.tasks[task.gid] = task
            for project in task.projects:
                self._record(project, task, "added", parent={"gid": project, "resource_type": "project"},
                             notify=notify)
        return task

    def generate(self, count: int, *, project: str | None = None) -> None:
        """Adds `count` generated tasks to a project (the English one by default), for benchmarks."""
        project = project or PROJECTS[0]["gid"]
        sections = [self.sections[g]["name"] for g in self.projects[project]["sections"]]
        for n in range(count):
            self.add_task(generated_task(n, project, sections), notify=False)

    # -- changes (a user's edit, or an API write) --------------------------------------------------

    def set_field(self, task_gid: str, name: str, value: Any, *, notify: bool = True) -> Task:
        """Sets a custom field (by name) or a task attribute, as a user would in Asana."""
        with self.lock:
            task = self.tasks[task_gid]
            if name in ("name", "notes", "completed", "assignee", "due_on"):
                setattr(task, name, value)
                task.modified_at = self.now()
                self._record_change(task, name, {"gid": task.gid, "resource_type": "task"}, notify=notify)
                return task
            gid = self.field_gid(name)
            self._set_custom_fields(task, {gid: value}, notify=notify)
            return task

    def move_to_section(self, task_gid: str, project_gid: str, section_name: str) -> None:
        with self.lock:
            task = self.tasks[task_gid]
            task.projects[project_gid] = self.section_gid(project_gid, section_name)
            task.modified_at = self.now()
            self._record_change(task, "memberships", None)

    def remove_from_project(self, task_gid: str, project_gid: str) -> None:
        with self.lock:
            task = self.tasks[task_gid]
            task.projects.pop(project_gid, None)
            task.modified_at = self.now()
            self._record(project_gid, task, "removed", parent={"gid": project_gid, "resource_type": "project"})

    def delete(self, task_gid: str) -> bool:
        with self.lock:
            task = self.tasks.pop(task_gid, None)
            if task is None:
                return False
            for project in task.projects:
                self._record(project, task, "deleted", parent=None)
            return True

    def expire_sync_tokens(self) -> None:
        """Makes every sync token handed out so far too old (the next /events call answers 412)."""
        with self.lock:
            self.generation += 1

    def _set_custom_fields(self, task: Task, values: dict[str, Any], *, notify: bool = True) -> None:
        changed = []
        for gid, value in values.items():
            if task.custom_fields.get(gid) != value:
                task.custom_fields[gid] = value
                changed.append(gid)
        if not changed:
            return
        task.modified_at = self.now()
        for gid in changed:
            self._record_change(task, "custom_fields", self._field_value(gid, task.custom_fields.get(gid)),
                                notify=notify)
            # Asana keeps a system story for each field change in the task's activity, beside the comments.
            spec = self.custom_fields[gid]
            shown = self._field_value(gid, task.custom_fields.get(gid)).get("display_value")
            task.stories.append({
                "gid": self._gid(), "resource_type": "story", "created_at": asana_time(task.modified_at),
                "resource_subtype": f"{spec['resource_subtype']}_custom_field_changed", "type": "system",
                "text": f"changed {spec['name']} to {shown}",
                "created_by": {"gid": USERS[0]["gid"], "resource_type": "user", "name": USERS[0]["name"]}})

    def _record_change(self, task: Task, field_name: str, new_value: Any, *, notify: bool = True) -> None:
        for project in task.projects:
            change = {"field": field_name, "action": "changed"}
            if new_value is not None:
                change["new_value"] = new_value
            self._record(project, task, "changed", parent=None, change=change, notify=notify)

    def _record(self, project: str, task: Task, action: str, *, parent: dict[str, Any] | None,
                change: dict[str, Any] | None = None, notify: bool = True, resource: dict[str, Any] | None = None
                ) -> None:
        event: dict[str, Any] = {
            "user": {"gid": USERS[0]["gid"], "resource_type": "user", "name": USERS[0]["name"]},
            "resource": resource or {"gid": task.gid, "resource_type": "task", "name": task.name},
            "type": (resource or {}).get("resource_type", "task"),
            "action": action,
            "created_at": asana_time(self.now()),
        }
        if parent is not None:  # the spec's EventResponse.parent is an object, not nullable: left out when none
            event["parent"] = parent
        if change is not None:
            event["change"] = change
        with self.lock:
            self.events.setdefault(project, []).append(event)
            hooks = [hook for hook in self.webhooks if hook["resource"] == project and hook["active"]]
        if notify:
            for hook in hooks:
                raw = json.dumps({"events": [event]}).encode()
                self._webhooks.send((hook, raw))

    # -- rendering ---------------------------------------------------------------------------------

    def _field_value(self, gid: str, value: Any) -> dict[str, Any]:
        spec = self.custom_fields[gid]
        kind = spec["resource_subtype"]
        body: dict[str, Any] = {"gid": gid, "resource_type": "custom_field", "name": spec["name"],
                                "resource_subtype": kind, "type": kind}
        if kind == "number":
            body["number_value"] = value
            body["precision"] = spec.get("precision", 0)
            body["display_value"] = None if value is None else f"{value:.{spec.get('precision', 0)}f}"
        elif kind == "text":
            body["text_value"] = value
            body["display_value"] = value
        else:
            option = next((o for o in spec["enum_options"] if o["gid"] == value), None)
            body["enum_value"] = option
            body["display_value"] = option["name"] if option else None
        return body

    def render_task(self, task: Task, wanted: set[str] | None) -> dict[str, Any]:
        if wanted is not None and wanted <= {"gid", "resource_type"}:  # an id listing: the compact record
            return {"gid": task.gid, "resource_type": "task"}
        memberships = []
        for project, section in task.projects.items():
            memberships.append({
                "project": {"gid": project, "resource_type": "project", "name": self.projects[project]["name"]},
                "section": {"gid": section, "resource_type": "section", "name": self.sections[section]["name"]},
            })
        fields_on_projects = {gid for project in task.projects for gid in self.projects[project]["fields"]}
        user = next((u for u in USERS if u["gid"] == task.assignee), None)
        every: dict[str, Any] = {
            "gid": task.gid, "resource_type": "task", "resource_subtype": "default_task", "name": task.name,
            "notes": task.notes, "completed": task.completed,
            "completed_at": asana_time(task.modified_at) if task.completed else None,
            "created_at": asana_time(task.created_at), "modified_at": asana_time(task.modified_at),
            "due_on": task.due_on.isoformat() if task.due_on else None,
            "assignee": {"gid": user["gid"], "resource_type": "user", "name": user["name"]} if user else None,
            "tags": [{"gid": hashlib.sha1(t.encode()).hexdigest()[:16], "resource_type": "tag", "name": t}
                     for t in task.tags],
            "memberships": memberships,
            "custom_fields": [self._field_value(gid, task.custom_fields.get(gid))
                              for gid in self.custom_fields if gid in fields_on_projects],
            "permalink_url": f"https://app.asana.com/0/{next(iter(task.projects), '0')}/{task.gid}",
        }
        if wanted is not None:
            every = {k: v for k, v in every.items() if k in wanted or k in ("gid", "resource_type")}
        return every

    # -- limits ------------------------------------------------------------------------------------

    def admit(self, kind: str) -> float | None:
        """Takes a slot for one request; returns None, or the Retry-After seconds when it is over a limit."""
        with self.lock:
            limit = MAX_WRITES_IN_FLIGHT if kind == "write" else MAX_READS_IN_FLIGHT
            if self._in_flight[kind] >= limit:
                self.violations += 1
                return 1.0
            if self.requests_per_minute is not None:
                now = time.monotonic()
                # Tests and /_sandbox/limits change the limit and the window on a running workspace.
                self._window.limit, self._window.seconds = self.requests_per_minute, self.window_seconds
                if not self._window.admit(now):
                    self.violations += 1
                    return self._window.retry_after(now)
            self._in_flight[kind] += 1
            if kind == "write":
                self.max_writes_in_flight = max(self.max_writes_in_flight, self._in_flight[kind])
            else:
                self.max_reads_in_flight = max(self.max_reads_in_flight, self._in_flight[kind])
            return None

    def release(self, kind: str) -> None:
        with self.lock:
            self._in_flight[kind] -= 1

    # -- webhooks ----------------------------------------------------------------------------------

    def _deliver(self, delivery: tuple[dict[str, Any], bytes]) -> None:
        hook, raw = delivery
        if self._webhook_client is None:
            self._webhook_client = httpx.Client(timeout=10)
        signature = hmac.new(hook["secret"].encode(), raw, hashlib.sha256).hexdigest()
        try:
            status: Any = self._webhook_client.post(hook["target"], content=raw, headers={
                "Content-Type": "application/json", "X-Hook-Signature": signature}).status_code
        except httpx.HTTPError as exc:
            status = f"error: {exc}"
        with self.lock:
            self.webhook_log.append({"webhook": hook["gid"], "target": hook["target"], "status": status,
                                     "events": len(json.loads(raw)["events"])})

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Blocks until every queued delivery was sent (tests)."""
        self._webhooks.wait(timeout)

    # -- events ------------------------------------------------------------------------------------

    def new_sync_token(self, project: str) -> str:
        with self.lock:
            token = secrets.token_hex(16)
            self.sync_tokens[token] = (project, len(self.events.get(project, [])), self.generation)
            return token


def _encode_offset(position: int, salt: str) -> str:
    return base64.urlsafe_b64encode(json.dumps({"p": position, "s": salt}).encode()).decode().rstrip("=")


def _decode_offset(offset: str) -> int | None:
    try:
        padded = offset + "=" * (-len(offset) % 4)
        return int(json.loads(base64.urlsafe_b64decode(padded))["p"])
    except (ValueError, KeyError, TypeError):
        return None


def _wanted(request: Request) -> set[str] | None:
    raw = request.query_params.get("opt_fields")
    if not raw:
        return None
    return {part.split(".", 1)[0] for part in raw.split(",") if part}


def create_app(workspace: AsanaWorkspace | None = None, state: SandboxState | None = None) -> FastAPI:
    space = workspace or AsanaWorkspace()
    state = state or SandboxState()
    app = FastAPI(title="backlog-sync sandbox: Asana", docs_url=None, redoc_url=None)
    app.state.workspace = space
    app.state.sandbox = state

    @app.middleware("http")
    async def authenticate_and_limit(request: Request, call_next):  # noqa: ANN202
        if request.url.path.startswith("/_sandbox"):
            return await call_next(request)
        header = request.headers.get("authorization", "")
        if not (header.lower().startswith("bearer ") and hmac.compare_digest(header[7:].strip(), space.token)):
            return _errors(401, "Not Authorized")
        kind = "read" if request.method in ("GET", "HEAD") else "write"
        retry_after = space.admit(kind)
        if retry_after is not None:
            return _errors(429, "You've made too many requests and hit a rate limit. Please retry after the given "
                                "amount of time.", headers={"Retry-After": str(max(1, int(retry_after + 0.999)))})
        try:
            delay = state.flags.get(f"{kind}_delay")  # holds the slot, as a slow Asana does
            if delay:
                await asyncio.sleep(float(delay))
            return await call_next(request)
        finally:
            space.release(kind)

    # Counting and faults sit outside authentication and limits, so scripted faults apply to any request.
    install_sandbox_plumbing(app, state)

    def page_of(items: list[Any], request: Request, path: str, render: Any) -> Any:
        try:
            limit = int(request.query_params.get("limit", "20"))
        except ValueError:
            return _errors(400, "limit: Not a number")
        if not 1 <= limit <= MAX_LIMIT:
            return _errors(400, f"limit: The value must be between 1 and {MAX_LIMIT}.")
        offset = request.query_params.get("offset")
        start = 0
        if offset:
            decoded = _decode_offset(offset)
            if decoded is None:
                return _errors(400, "offset: Your pagination token is invalid.")
            start = decoded
        chunk = items[start:start + limit]
        body: dict[str, Any] = {"data": [render(item) for item in chunk], "next_page": None}
        if start + limit < len(items):
            position = start if state.flags.get("repeat_page_token") and start else start + limit
            token = _encode_offset(position, "p")
            body["next_page"] = {"offset": token, "path": f"{path}?limit={limit}&offset={token}",
                                 "uri": f"{space.base_url}{path}?limit={limit}&offset={token}"}
        return body

    def project_or_404(project_gid: str) -> dict[str, Any] | None:
        return space.projects.get(project_gid)

    @app.get("/projects/{project_gid}")
    def get_project(project_gid: str) -> Any:
        project = project_or_404(project_gid)
        if project is None:
            return _errors(404, f"project: Unknown object: {project_gid}")
        return {"data": {"gid": project_gid, "resource_type": "project", "name": project["name"],
                         "workspace": {"gid": WORKSPACE_GID, "resource_type": "workspace", "name": "Acme marketing"},
                         "permalink_url": f"https://app.asana.com/0/{project_gid}/list"}}

    @app.get("/projects/{project_gid}/custom_field_settings")
    def custom_field_settings(project_gid: str, request: Request) -> Any:
        project = project_or_404(project_gid)
        if project is None:
            return _errors(404, f"project: Unknown object: {project_gid}")

        def render(gid: str) -> dict[str, Any]:
            spec = space.custom_fields[gid]
            custom = {"gid": gid, "resource_type": "custom_field", "name": spec["name"],
                      "resource_subtype": spec["resource_subtype"], "type": spec["resource_subtype"]}
            if spec["resource_subtype"] == "number":
                custom["precision"] = spec.get("precision", 0)
            if spec["resource_subtype"] == "enum":
                custom["enum_options"] = spec["enum_options"]
            return {"gid": f"{project_gid}{gid[-4:]}", "resource_type": "custom_field_setting", "is_important": True,
                    "project": {"gid": project_gid, "resource_type": "project", "name": project["name"]},
                    "custom_field": custom}

        return page_of(project["fields"], request, f"/projects/{project_gid}/custom_field_settings", render)

    @app.get("/projects/{project_gid}/tasks")
    def tasks_of_project(project_gid: str, request: Request) -> Any:
        if project_or_404(project_gid) is None:
            return _errors(404, f"project: Unknown object: {project_gid}")
        wanted = _wanted(request)
        with space.lock:
            tasks = [t for t in space.tasks.values() if project_gid in t.projects]
        return page_of(tasks, request, f"/projects/{project_gid}/tasks", lambda t: space.render_task(t, wanted))

    @app.get("/tasks")
    def tasks_query(request: Request) -> Any:
        project_gid = request.query_params.get("project")
        if not project_gid:
            return _errors(400, "Must specify exactly one of project, tag, section, user task list, or assignee + "
                                "workspace")
        if project_or_404(project_gid) is None:
            return _errors(404, f"project: Unknown object: {project_gid}")
        since_raw = request.query_params.get("modified_since")
        since = None
        if since_raw:
            try:
                since = datetime.fromisoformat(since_raw.replace("Z", "+00:00"))
            except ValueError:
                return _errors(400, f"modified_since: Not a valid date-time: {since_raw}")
        wanted = _wanted(request)
        with space.lock:
            tasks = [t for t in space.tasks.values()
                     if project_gid in t.projects and (since is None or t.modified_at >= since)]
        return page_of(tasks, request, "/tasks", lambda t: space.render_task(t, wanted))

    @app.get("/users/{user_gid}")
    def get_user(user_gid: str) -> Any:
        if user_gid not in ("me", space.me["gid"]):
            return _errors(404, f"user: Unknown object: {user_gid}")
        return {"data": {**space.me, "resource_type": "user"}}

    @app.get("/tasks/{task_gid}")
    def get_task(task_gid: str, request: Request) -> Any:
        task = space.tasks.get(task_gid)
        if task is None:
            return _errors(404, f"task: Unknown object: {task_gid}")
        if task_gid in space.hidden_tasks:
            # A task in a project the token's user is not a member of: Asana answers 403.
            return _errors(403, "Forbidden")
        return {"data": space.render_task(task, _wanted(request))}

    @app.put("/tasks/{task_gid}")
    async def update_task(task_gid: str, request: Request) -> Any:
        task = space.tasks.get(task_gid)
        if task is None:
            return _errors(404, f"task: Unknown object: {task_gid}")
        try:
            body = await request.json()
        except json.JSONDecodeError:
            return _errors(400, "Could not parse request data, invalid JSON")
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict):
            return _errors(400, "data: Missing input")
        custom = data.get("custom_fields") or {}
        if not isinstance(custom, dict):
            return _errors(400, "custom_fields: Value is not an object")
        allowed = {gid for project in task.projects for gid in space.projects[project]["fields"]}
        values: dict[str, Any] = {}
        for gid, value in custom.items():
            spec = space.custom_fields.get(gid)
            if spec is None or gid not in allowed:
                return _errors(400, f"custom_fields: Custom field with ID {gid} is not on given object")
            if spec["resource_subtype"] == "number" and not (
                    value is None or (isinstance(value, int | float) and not isinstance(value, bool))):
                return _errors(400, f"custom_fields: Number value expected for custom field {gid}")
            if spec["resource_subtype"] == "number" and value is not None:
                # Asana stores a number rounded to the field's precision (decimal places), half away from zero.
                places = int(spec.get("precision", 0))
                rounded = Decimal(str(value)).quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
                value = int(rounded) if places == 0 else float(rounded)
            values[gid] = value
        with space.lock:
            space.writes.append((task_gid, values))
            space._set_custom_fields(task, values)
        return {"data": space.render_task(task, _wanted(request))}

    @app.get("/tasks/{task_gid}/stories")
    def stories_of_task(task_gid: str, request: Request) -> Any:
        task = space.tasks.get(task_gid)
        if task is None:
            return _errors(404, f"task: Unknown object: {task_gid}")
        wanted = _wanted(request)
        with space.lock:
            stories = list(task.stories)  # oldest first, as Asana lists them

        def render(story: dict[str, Any]) -> dict[str, Any]:
            compact = {k: story[k] for k in ("gid", "resource_type", "created_at", "created_by", "resource_subtype",
                                             "text")}
            return compact if wanted is None else {k: v for k, v in story.items()
                                                   if k in wanted or k in ("gid", "resource_type")}

        return page_of(stories, request, f"/tasks/{task_gid}/stories", render)

    @app.post("/tasks/{task_gid}/stories", status_code=201)
    async def add_story(task_gid: str, request: Request) -> Any:
        task = space.tasks.get(task_gid)
        if task is None:
            return _errors(404, f"task: Unknown object: {task_gid}")
        body = await request.json()
        text = ((body or {}).get("data") or {}).get("text") if isinstance(body, dict) else None
        if not isinstance(text, str) or not text:
            return _errors(400, "text: Missing input")
        now = space.now()
        story = {"gid": space._gid(), "resource_type": "story", "created_at": asana_time(now),
                 "resource_subtype": "comment_added", "text": text, "type": "comment",
                 "created_by": {"gid": USERS[0]["gid"], "resource_type": "user", "name": USERS[0]["name"]},
                 "target": {"gid": task.gid, "resource_type": "task", "name": task.name}}
        with space.lock:
            task.stories.append(story)
            for project in task.projects:
                space._record(project, task, "added", parent={"gid": task.gid, "resource_type": "task"},
                              resource={"gid": story["gid"], "resource_type": "story",
                                        "resource_subtype": "comment_added"})
        return JSONResponse({"data": story}, status_code=201)

    @app.get("/events")
    def events(request: Request) -> Any:
        resource = request.query_params.get("resource")
        if not resource or resource not in space.projects:
            return _errors(400 if not resource else 404, "resource: Missing input" if not resource
                           else f"resource: Unknown object: {resource}")
        token = request.query_params.get("sync")
        with space.lock:
            known = space.sync_tokens.get(token or "")
            if known is None or known[0] != resource or known[2] < space.generation:
                fresh = space.new_sync_token(resource)
                message = SYNC_INVALID
                return JSONResponse({"errors": [{"message": message}], "sync": fresh}, status_code=412)
            position = known[1]
            log = space.events.get(resource, [])
            chunk = log[position:position + EVENTS_PER_CALL]
            next_token = secrets.token_hex(16)
            space.sync_tokens[next_token] = (resource, position + len(chunk), space.generation)
            has_more = position + len(chunk) < len(log)
        if state.flags.get("repeat_sync_token") and has_more:
            next_token = token or next_token
        return {"data": chunk, "sync": next_token, "has_more": has_more}

    @app.post("/webhooks", status_code=201)
    async def create_webhook(request: Request) -> Any:
        body = await request.json()
        data = body.get("data") if isinstance(body, dict) else None
        if not isinstance(data, dict) or not data.get("resource") or not data.get("target"):
            return _errors(400, "resource, target: Missing input")
        resource, target = str(data["resource"]), str(data["target"])
        if resource not in space.projects:
            return _errors(404, f"resource: Unknown object: {resource}")
        secret = secrets.token_hex(32)
        # Asana's handshake happens inside this request: the target must echo the secret before we answer 201.
        try:
            async with httpx.AsyncClient(timeout=10) as client:
                answer = await client.post(target, headers={"X-Hook-Secret": secret})
            echoed = answer.status_code in (200, 204) and answer.headers.get("X-Hook-Secret") == secret
        except httpx.HTTPError:
            echoed = False
        if not echoed:
            return _errors(400, "Could not complete activation handshake with target URL. Please ensure that the "
                                "receiving server is accepting connections and echoes the X-Hook-Secret header.")
        hook = {"gid": space._gid(), "resource": resource, "target": target, "secret": secret, "active": True,
                "filters": data.get("filters") or [], "created_at": asana_time(space.now())}
        with space.lock:
            space.webhooks.append(hook)
        return JSONResponse({"data": {
            "gid": hook["gid"], "resource_type": "webhook", "active": True,
            "resource": {"gid": resource, "resource_type": "project", "name": space.projects[resource]["name"]},
            "target": target, "created_at": hook["created_at"], "last_failure_content": "",
            "filters": [{"resource_type": f.get("resource_type"), "action": f.get("action")}
                        for f in hook["filters"] if isinstance(f, dict)],
        }, "X-Hook-Secret": secret}, status_code=201)

    # -- sandbox controls --------------------------------------------------------------------------

    @app.post("/_sandbox/edit", include_in_schema=False)
    async def user_edit(request: Request) -> dict[str, Any]:
        body = await request.json()
        task = await asyncio.to_thread(space.set_field, str(body["task"]), str(body["field"]), body.get("value"))
        return {"gid": task.gid, "modified_at": asana_time(task.modified_at)}

    @app.post("/_sandbox/expire_sync_tokens", include_in_schema=False)
    def expire() -> dict[str, Any]:
        space.expire_sync_tokens()
        return {"generation": space.generation}

    @app.post("/_sandbox/generate", include_in_schema=False)
    async def generate(request: Request) -> dict[str, Any]:
        body = await request.json()
        space.generate(int(body["count"]), project=body.get("project"))
        return {"tasks": len(space.tasks)}

    @app.get("/_sandbox/limits", include_in_schema=False)
    def limits() -> dict[str, Any]:
        return {"violations": space.violations, "requests_per_minute": space.requests_per_minute,
                "max_reads_in_flight": space.max_reads_in_flight, "max_writes_in_flight": space.max_writes_in_flight}

    @app.post("/_sandbox/limits", include_in_schema=False)
    async def set_limits(request: Request) -> dict[str, Any]:
        body = await request.json()
        space.requests_per_minute = body.get("requests_per_minute")
        return {"requests_per_minute": space.requests_per_minute}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serves the emulated Asana workspace until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description="backlog-sync's emulated Asana workspace")
    parser.add_argument("--port", type=int, default=8083)
    parser.add_argument("--generate", type=int, default=0, help="also add N generated tasks to the English project")
    parser.add_argument("--requests-per-minute", type=int, default=None, help="enforce this limit per token")
    args = parser.parse_args(argv)
    space = AsanaWorkspace(base_url=f"http://127.0.0.1:{args.port}", seed=args.generate == 0,
                           requests_per_minute=args.requests_per_minute)
    if args.generate:
        space.generate(args.generate)
    print(f"emulated Asana on http://127.0.0.1:{args.port} (bearer {space.token}); projects "  # noqa: T201
          f"{', '.join(space.projects)}; {len(space.tasks)} tasks", flush=True)
    uvicorn.run(create_app(space), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
