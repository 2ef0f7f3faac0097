"""An emulated Jira Cloud site over real HTTP: the endpoints backlog-sync uses, shaped as the published
REST v3 and Agile specs say (tests/contract/test_sandbox_specs.py validates the responses against them).

Endpoints: serverInfo (v2 and v3), myself, field (list and create), search/jql (GET and POST, paging by
nextPageToken until isLast; the removed /rest/api/3/search answers 410), issue get/edit/delete, comment add,
agile issue rank. Authentication: Cloud basic (email + API token) or a bearer personal access token.

JQL is a useful subset: field comparisons (=, !=, >, >=, <, <=, ~), IN / NOT IN lists, AND / OR / NOT,
parentheses and ORDER BY. Dates in JQL are read in the calling user's time zone, as Jira does.

Run it alone with `python -m sandbox.jira --port 8081` (or `backlog-sync sandbox`).
"""

from __future__ import annotations

import argparse
import base64
import binascii
import hashlib
import hmac
import json
import re
import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from sandbox.common import SandboxState, WebhookSender, install_sandbox_plumbing
from sandbox.jira_data import (
    CUSTOM_FIELDS,
    FIELD_ID,
    ISSUE_TYPES,
    PEOPLE,
    STATUSES,
    SYSTEM_FIELDS,
    SeedIssue,
    base_time,
    generated_issue,
    seed_issues,
)

DEFAULT_EMAIL = "marketing-ops@example.com"
DEFAULT_TOKEN = "sandbox-jira-token"
DEFAULT_PAT = "sandbox-jira-pat"
MAX_RESULTS = 100  # Jira caps a search page at 100 issues with fields, 5000 with ids only
MAX_RESULTS_IDS = 5000
RANK_BATCH = 50


def jira_time(moment: datetime) -> str:
    """Jira's timestamp format: 2026-11-24T09:15:02.123+0000."""
    moment = moment.astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}+0000"


def _adf(text: str) -> dict[str, Any]:
    """A plain text as an ADF document: blank lines split paragraphs, "- " lines become a bullet list."""
    content: list[dict[str, Any]] = []
    for block in re.split(r"\n\s*\n", text.strip()):
        lines = block.split("\n")
        if all(line.startswith("- ") for line in lines):
            content.append({"type": "bulletList", "content": [
                {"type": "listItem", "content": [{"type": "paragraph", "content": [
                    {"type": "text", "text": line[2:]}]}]} for line in lines]})
            continue
        nodes: list[dict[str, Any]] = []
        for index, line in enumerate(lines):
            if index:
                nodes.append({"type": "hardBreak"})
            if line:
                nodes.append({"type": "text", "text": line})
        if nodes:
            content.append({"type": "paragraph", "content": nodes})
    return {"type": "doc", "version": 1, "content": content}


def _wiki(document: dict[str, Any]) -> str:
    """An ADF document as the plain wiki text a REST v2 answer carries (paragraphs and "* " bullets)."""
    blocks = []
    for block in document.get("content") or []:
        if block.get("type") == "bulletList":
            blocks.append("\n".join("* " + "".join(node.get("text", "") for para in item.get("content", [])
                                                     for node in para.get("content", []))
                                      for item in block.get("content", [])))
        else:
            blocks.append("".join(node.get("text", "") if node.get("type") == "text" else "\n"
                                  for node in block.get("content", [])))
    return "\n\n".join(blocks)


def _is_adf(value: Any) -> bool:
    return isinstance(value, dict) and value.get("type") == "doc" and isinstance(value.get("content"), list)


@dataclass
class Issue:
    id: int
    key: str
    project: str
    fields: dict[str, Any]  # editable fields as Jira holds them: summary, description (ADF), customfield_*...
    created: datetime
    updated: datetime
    lexorank: str
    comments: list[dict[str, Any]] = field(default_factory=list)
    generated: int | None = None  # for generated issues: regenerate the description on demand


class JiraSite:
    """The site's state: users, fields, issues, sprints, registered webhooks. Thread-safe."""

    def __init__(self, *, base_url: str = "http://127.0.0.1", user_time_zone: str = "America/Los_Angeles",
                 seed: bool = True, deployment: str = "cloud") -> None:
        self.lock = threading.RLock()
        self.base_url = base_url
        # "datacenter": Jira Data Center 9/10, REST v2 only (/rest/api/2/search paged by startAt), wiki text.
        self.deployment = deployment
        self.email = DEFAULT_EMAIL
        self.api_token = DEFAULT_TOKEN
        self.pat = DEFAULT_PAT
        self.user_time_zone = user_time_zone
        self.clock_offset = timedelta(0)
        self.custom_fields: list[tuple[str, str, str, str]] = list(CUSTOM_FIELDS)
        self.issues: dict[int, Issue] = {}
        self.by_key: dict[str, int] = {}
        self.next_id = 10000
        self.next_number: dict[str, int] = {}
        self.next_comment = 10000
        self.searches: OrderedDict[str, list[int]] = OrderedDict()  # snapshot id -> matching issue ids
        self.webhooks: list[dict[str, Any]] = []  # {"url", "secret", "events"}
        self.webhook_log: list[dict[str, Any]] = []  # what was sent where and the answer's status
        self.edits: list[dict[str, Any]] = []  # every accepted PUT body, for tests
        self._webhooks: WebhookSender[tuple[str, str, bytes, list[dict[str, Any]]]] = WebhookSender(
            "jira-webhooks", lambda delivery: self._deliver(*delivery))
        if seed:
            for seeded in seed_issues():
                self.add_issue(seeded)

    # -- time ------------------------------------------------------------------------------------

    def now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def advance(self, seconds: float) -> None:
        """Moves the site's clock forward (benchmarks and tests of windows)."""
        with self.lock:
            self.clock_offset += timedelta(seconds=seconds)

    # -- issues ------------------------------------------------------------------------------------

    def add_issue(self, seeded: SeedIssue, *, generated: bool = False, when: datetime | None = None) -> Issue:
        with self.lock:
            self.next_id += 1
            number = self.next_number.get(seeded.project, 0) + 1
            self.next_number[seeded.project] = number
            created = when or (base_time() + timedelta(minutes=seeded.key_number * 7))
            fields: dict[str, Any] = {
                "summary": seeded.summary,
                "description": None if generated or not seeded.description else _adf(seeded.description),
                "issuetype": seeded.issue_type,
                "status": seeded.status,
                "labels": list(seeded.labels),
                "assignee": seeded.assignee,
                "duedate": seeded.duedate,
            }
            for name, value in seeded.inputs.items():
                if value is None:
                    continue
                field_id = FIELD_ID[name]
                fields[field_id] = {"value": value, "id": str(abs(hash(value)) % 10000)} if name == "Channel" \
                    else value
            fields[FIELD_ID["Sprint"]] = [{"id": 3, "name": "MKT Sprint 12", "state": "active", "boardId": 1}] \
                if seeded.status in ("In Progress", "En cours") else None
            issue = Issue(id=self.next_id, key=f"{seeded.project}-{number}", project=seeded.project, fields=fields,
                          created=created, updated=created, lexorank=f"0|i{self.next_id:08d}:",
                          generated=seeded.key_number if generated else None)
            self.issues[issue.id] = issue
            self.by_key[issue.key] = issue.id
            return issue

    def generate(self, count: int, *, project: str = "MKT", start: int = 1) -> None:
        """Adds `count` realistic generated issues (about 6 KB each with fields=*all)."""
        moment = self.now() - timedelta(days=1)
        for number in range(start, start + count):
            seeded = generated_issue(number, project=project)
            self.add_issue(seeded, generated=True, when=moment + timedelta(milliseconds=number))

    def find(self, id_or_key: str) -> Issue | None:
        with self.lock:
            if id_or_key.isdigit():
                return self.issues.get(int(id_or_key))
            issue_id = self.by_key.get(id_or_key.upper())
            return self.issues.get(issue_id) if issue_id is not None else None

    def delete(self, id_or_key: str) -> bool:
        with self.lock:
            issue = self.find(id_or_key)
            if issue is None:
                return False
            del self.issues[issue.id]
            del self.by_key[issue.key]
        self.notify("jira:issue_deleted", issue)
        return True

    def set_field(self, id_or_key: str, name: str, value: Any, *, notify: bool = True) -> Issue:
        """A user's edit in the Jira UI: sets a field by its display name (or a system field id)."""
        field_id = FIELD_ID.get(name) or self.field_id_for(name) or name
        with self.lock:
            issue = self.find(id_or_key)
            if issue is None:
                raise KeyError(id_or_key)
            before = issue.fields.get(field_id)
            issue.fields[field_id] = value
            issue.updated = self.now()
        if notify:
            self.notify("jira:issue_updated", issue, changes=[(field_id, name, before, value)])
        return issue

    def field_id_for(self, name: str) -> str | None:
        for field_id, field_name, _, _ in self.custom_fields:
            if field_name.lower() == name.lower():
                return field_id
        return None

    def custom_type(self, field_id: str) -> str | None:
        for known_id, _, schema_type, _ in self.custom_fields:
            if known_id == field_id:
                return schema_type
        return None

    # -- rendering -------------------------------------------------------------------------------

    def field_list(self) -> list[dict[str, Any]]:
        fields = []
        for field_id, name, schema in SYSTEM_FIELDS:
            fields.append({"id": field_id, "key": field_id, "name": name, "custom": False, "orderable": True,
                           "navigable": True, "searchable": True, "clauseNames": [field_id], "schema": schema})
        for field_id, name, schema_type, custom in self.custom_fields:
            number = int(field_id.split("_")[1])
            schema: dict[str, Any] = {"type": schema_type, "custom": custom, "customId": number}
            if schema_type == "array":
                schema["items"] = "json"
            fields.append({"id": field_id, "key": field_id, "name": name, "custom": True, "orderable": True,
                           "navigable": True, "searchable": True,
                           "clauseNames": [f"cf[{number}]", name], "schema": schema})
        return fields

    def _user(self, index: int | None) -> dict[str, Any] | None:
        if index is None:
            return None
        account_id, name = PEOPLE[index % len(PEOPLE)]
        return {"self": f"{self.base_url}/rest/api/3/user?accountId={account_id}", "accountId": account_id,
                "displayName": name, "active": True, "timeZone": self.user_time_zone, "accountType": "atlassian",
                "avatarUrls": {size: f"https://avatar.example.com/{account_id}?s={size.split('x')[0]}"
                               for size in ("48x48", "24x24", "16x16", "32x32")}}

    def render(self, issue: Issue, wanted: set[str] | None) -> dict[str, Any]:
        """The issue as GET /rest/api/3/issue returns it; `wanted` None means every field (*all)."""
        f = issue.fields
        status_name = f["status"]
        status_id, category_key, category_id, category_name = STATUSES.get(status_name, ("1", "new", 2, "To Do"))
        type_name = f["issuetype"]
        description = f.get("description")
        if description is None and issue.generated is not None:
            description = _adf(generated_issue(issue.generated, project=issue.project).description)
        project_id = str(10000 + sum(map(ord, issue.project)))
        every: dict[str, Any] = {
            "summary": f["summary"],
            "description": description,
            "issuetype": {"self": f"{self.base_url}/rest/api/3/issuetype/{ISSUE_TYPES.get(type_name, '10006')}",
                          "id": ISSUE_TYPES.get(type_name, "10006"), "name": type_name, "subtask": False,
                          "description": f"A {type_name.lower()} item of the marketing backlog.",
                          "iconUrl": f"{self.base_url}/images/icons/issuetypes/story.svg", "hierarchyLevel": 0},
            "status": {"self": f"{self.base_url}/rest/api/3/status/{status_id}", "id": status_id,
                       "name": status_name, "description": "",
                       "iconUrl": f"{self.base_url}/images/icons/statuses/generic.png",
                       "statusCategory": {"self": f"{self.base_url}/rest/api/3/statuscategory/{category_id}",
                                          "id": category_id, "key": category_key, "colorName": "blue-gray",
                                          "name": category_name}},
            "labels": list(f.get("labels") or []),
            "assignee": self._user(f.get("assignee")),
            "reporter": self._user(0),
            "creator": self._user(0),
            "priority": {"self": f"{self.base_url}/rest/api/3/priority/3", "id": "3", "name": "Medium",
                         "iconUrl": f"{self.base_url}/images/icons/priorities/medium.svg"},
            "project": {"self": f"{self.base_url}/rest/api/3/project/{project_id}", "id": project_id,
                        "key": issue.project, "name": "Marketing" if issue.project == "MKT" else issue.project,
                        "projectTypeKey": "software", "simplified": False,
                        "avatarUrls": {"48x48": f"{self.base_url}/rest/api/3/universal_avatar/view/type/project"}},
            "duedate": f.get("duedate"),
            "created": jira_time(issue.created),
            "updated": jira_time(issue.updated),
            "statuscategorychangedate": jira_time(issue.updated),
            "lastViewed": None,
            "resolution": None,
            "resolutiondate": None,
            "environment": None,
            "components": [],
            "fixVersions": [],
            "versions": [],
            "issuelinks": [],
            "subtasks": [],
            "attachment": [],
            "timetracking": {},
            "timeestimate": None,
            "timeoriginalestimate": None,
            "timespent": None,
            "aggregatetimespent": None,
            "workratio": -1,
            "security": None,
            "watches": {"self": f"{self.base_url}/rest/api/3/issue/{issue.key}/watchers", "watchCount": 1,
                        "isWatching": False},
            "votes": {"self": f"{self.base_url}/rest/api/3/issue/{issue.key}/votes", "votes": 0,
                      "hasVoted": False},
            "comment": {"comments": issue.comments[-5:], "self": f"{self.base_url}/rest/api/3/issue/{issue.id}"
                        "/comment", "maxResults": 5, "total": len(issue.comments), "startAt": 0},
        }
        for field_id, _, _, custom in self.custom_fields:
            if custom.endswith("gh-lexo-rank"):
                every[field_id] = issue.lexorank
            else:
                every[field_id] = f.get(field_id)
        if wanted is not None:
            every = {name: value for name, value in every.items() if name in wanted}
        return {"expand": "renderedFields,names,schema,operations,editmeta,changelog,versionedRepresentations",
                "id": str(issue.id), "self": f"{self.base_url}/rest/api/3/issue/{issue.id}", "key": issue.key,
                "fields": every}

    # -- webhooks ----------------------------------------------------------------------------------

    def register_webhook(self, url: str, *, secret: str | None = None, events: list[str] | None = None) -> None:
        with self.lock:
            self.webhooks.append({"url": url, "secret": secret, "events": events})

    def notify(self, event: str, issue: Issue, *, changes: list[tuple[str, str, Any, Any]] | None = None) -> None:
        """Sends a webhook (v2 representation, as Jira Cloud does) to every registered callback."""
        with self.lock:
            hooks = [hook for hook in self.webhooks if not hook["events"] or event in hook["events"]]
            if not hooks:
                return
            body = {
                "timestamp": int(self.now().timestamp() * 1000),
                "webhookEvent": event,
                "issue_event_type_name": "issue_generic" if event == "jira:issue_updated" else event.split("_")[-1],
                "user": self._user(0),
                "issue": self.render(issue, None),
            }
            issue_body = body["issue"]["fields"]
            if isinstance(issue_body.get("description"), dict):  # v2: descriptions are wiki text
                from_adf = issue_body["description"]
                issue_body["description"] = "\n".join(
                    node.get("text", "") for block in from_adf["content"] for node in block.get("content", [])
                    if isinstance(node, dict) and node.get("type") == "text")
            if changes:
                body["changelog"] = {"id": str(uuid.uuid4().int % 10**6), "items": [
                    {"field": name, "fieldtype": "custom" if field_id.startswith("customfield_") else "jira",
                     "fieldId": field_id, "from": None, "fromString": None if before is None else str(before),
                     "to": None, "toString": None if after is None else str(after)}
                    for field_id, name, before, after in changes]}
        # Jira sends webhooks after the change is committed, not inside the request that made it.
        self._webhooks.send((event, issue.key, json.dumps(body).encode(), hooks))

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Blocks until every queued webhook was delivered (tests)."""
        self._webhooks.wait(timeout)

    def _deliver(self, event: str, key: str, raw: bytes, hooks: list[dict[str, Any]]) -> None:
        for hook in hooks:
            headers = {"Content-Type": "application/json", "X-Atlassian-Webhook-Identifier": uuid.uuid4().hex}
            if hook["secret"]:
                digest = hmac.new(hook["secret"].encode(), raw, hashlib.sha256).hexdigest()
                headers["X-Hub-Signature"] = f"sha256={digest}"
            try:
                status = httpx.post(hook["url"], content=raw, headers=headers, timeout=5).status_code
            except httpx.HTTPError as exc:
                status = f"error: {exc}"
            with self.lock:
                self.webhook_log.append({"event": event, "issue": key, "url": hook["url"], "status": status})


# --------------------------------------------------------------------------------------------------
# JQL: a tokenizer and a recursive-descent parser into predicates over issues.

_TOKEN = re.compile(r'\s*(?:(?P<str>"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')|(?P<op>!=|>=|<=|!~|=|>|<|~|\(|\)|,)'
                    r'|(?P<word>[^\s=!<>~(),"\']+))')


class JqlError(ValueError):
    pass


def _tokens(jql: str) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    position = 0
    jql = jql.strip()
    while position < len(jql):
        match = _TOKEN.match(jql, position)
        if match is None or match.end() == position:
            raise JqlError(f"Error in the JQL Query: unexpected character at position {position}.")
        position = match.end()
        if match.group("str") is not None:
            out.append(("str", match.group("str")[1:-1].replace('\\"', '"')))
        elif match.group("op") is not None:
            out.append(("op", match.group("op")))
        elif match.group("word") is not None:
            out.append(("word", match.group("word")))
    return out


@dataclass
class Query:
    predicate: Any
    order: list[tuple[str, bool]]  # (field, descending)


class _Parser:
    def __init__(self, site: JiraSite, tokens: list[tuple[str, str]], tz: ZoneInfo) -> None:
        self.site = site
        self.tokens = tokens
        self.i = 0
        self.tz = tz

    def peek(self) -> tuple[str, str] | None:
        return self.tokens[self.i] if self.i < len(self.tokens) else None

    def take(self) -> tuple[str, str]:
        token = self.peek()
        if token is None:
            raise JqlError("Error in the JQL Query: the query ended unexpectedly.")
        self.i += 1
        return token

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token[0] == "word" and token[1].lower() == word:
            self.i += 1
            return True
        return False

    def parse(self) -> Query:
        predicate: Any = _always
        token = self.peek()
        if token is not None and not (token[0] == "word" and token[1].lower() == "order"):
            predicate = self.expr()
        order: list[tuple[str, bool]] = []
        if self.keyword("order"):
            if not self.keyword("by"):
                raise JqlError("Error in the JQL Query: expecting 'by' after 'order'.")
            while True:
                name = self.take()[1].lower()
                descending = False
                if self.keyword("desc"):
                    descending = True
                else:
                    self.keyword("asc")
                order.append((name, descending))
                token = self.peek()
                if token == ("op", ","):
                    self.i += 1
                    continue
                break
        if self.peek() is not None:
            raise JqlError(f"Error in the JQL Query: unexpected {self.peek()[1]!r}.")  # type: ignore[index]
        return Query(predicate, order)

    def expr(self) -> Any:
        left = self.term()
        while self.keyword("or"):
            right = self.term()
            left = (lambda a, b: lambda issue: a(issue) or b(issue))(left, right)
        return left

    def term(self) -> Any:
        left = self.factor()
        while self.keyword("and"):
            right = self.factor()
            left = (lambda a, b: lambda issue: a(issue) and b(issue))(left, right)
        return left

    def factor(self) -> Any:
        if self.keyword("not"):
            inner = self.factor()
            return lambda issue: not inner(issue)
        if self.peek() == ("op", "("):
            self.i += 1
            inner = self.expr()
            if self.take() != ("op", ")"):
                raise JqlError("Error in the JQL Query: expecting ')'.")
            return inner
        return self.clause()

    def clause(self) -> Any:
        kind, name = self.take()
        if kind not in ("word", "str"):
            raise JqlError(f"Error in the JQL Query: expecting a field name, got {name!r}.")
        getter = self.getter(name)
        negate = False
        if self.keyword("not"):
            negate = True
            if not self.keyword("in"):
                raise JqlError("Error in the JQL Query: expecting 'in' after 'not'.")
            op = "in"
        elif self.keyword("in"):
            op = "in"
        elif self.keyword("is"):
            negate = self.keyword("not")
            if not self.keyword("empty") and not self.keyword("null"):
                raise JqlError("Error in the JQL Query: expecting EMPTY after IS.")
            test = lambda issue: getter(issue) in (None, "", [])  # noqa: E731
            return (lambda issue: not test(issue)) if negate else test
        else:
            op_kind, op = self.take()
            if op_kind != "op":
                raise JqlError(f"Error in the JQL Query: expecting an operator after {name!r}.")
        if op == "in":
            if self.take() != ("op", "("):
                raise JqlError("Error in the JQL Query: expecting '(' after IN.")
            values = []
            while True:
                values.append(self.value(name))
                token = self.take()
                if token == ("op", ")"):
                    break
                if token != ("op", ","):
                    raise JqlError("Error in the JQL Query: expecting ',' or ')'.")
            test = lambda issue: _matches_any(getter(issue), values)  # noqa: E731
            return (lambda issue: not test(issue)) if negate else test
        value = self.value(name)
        compare = {
            "=": lambda a, b: _matches_any(a, [b]),
            "!=": lambda a, b: not _matches_any(a, [b]),
            "~": lambda a, b: a is not None and str(b).lower() in str(a).lower(),
            "!~": lambda a, b: a is None or str(b).lower() not in str(a).lower(),
            ">": lambda a, b: a is not None and a > b,
            ">=": lambda a, b: a is not None and a >= b,
            "<": lambda a, b: a is not None and a < b,
            "<=": lambda a, b: a is not None and a <= b,
        }.get(op)
        if compare is None:
            raise JqlError(f"Error in the JQL Query: unknown operator {op!r}.")
        return lambda issue: compare(getter(issue), value)

    def getter(self, name: str) -> Any:
        lowered = name.lower()
        if lowered in ("project",):
            return lambda issue: issue.project
        if lowered in ("key", "issuekey", "id"):
            return lambda issue: issue.id
        if lowered in ("updated", "updateddate"):
            return lambda issue: issue.updated
        if lowered in ("created", "createddate"):
            return lambda issue: issue.created
        if lowered in ("status", "labels", "summary", "issuetype", "type"):
            attr = "issuetype" if lowered == "type" else lowered
            return lambda issue: issue.fields.get(attr)
        field_id = self.site.field_id_for(name)
        if field_id is None and re.fullmatch(r"cf\[\d+\]", lowered):
            field_id = f"customfield_{lowered[3:-1]}"
        if field_id is None:
            raise JqlError(f"Field '{name}' does not exist or you do not have permission to view it.")
        return lambda issue: issue.fields.get(field_id)

    def value(self, name: str) -> Any:
        kind, raw = self.take()
        lowered = name.lower()
        if lowered in ("key", "issuekey", "id"):
            issue = self.site.find(raw)
            return issue.id if issue is not None else -1
        if lowered in ("updated", "updateddate", "created", "createddate"):
            return _jql_date(raw, self.tz, self.site.now())
        if kind == "word" and re.fullmatch(r"-?\d+(\.\d+)?", raw) and lowered not in ("project", "status"):
            return float(raw)
        return raw


def _always(_issue: Issue) -> bool:
    return True


def _matches_any(actual: Any, values: list[Any]) -> bool:
    items = actual if isinstance(actual, list) else [actual]
    for item in items:
        if isinstance(item, dict):
            item = item.get("value", item.get("name"))
        for value in values:
            if isinstance(item, str) and isinstance(value, str):
                if item.lower() == value.lower():
                    return True
            elif item == value:
                return True
    return False


_RELATIVE = re.compile(r"^(?P<sign>[-+]?)(?P<n>\d+)(?P<unit>[mhdw])$")


def _jql_date(raw: str, tz: ZoneInfo, now: datetime) -> datetime:
    """Reads a JQL date ("2026-11-24 09:15", "2026/11/24", "-15m") in the user's time zone."""
    relative = _RELATIVE.match(raw.strip())
    if relative:
        amount = int(relative.group("n")) * (-1 if relative.group("sign") == "-" else 1)
        unit = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}[relative.group("unit")]
        return now + timedelta(**{unit: amount})
    for pattern in ("%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d", "%Y/%m/%d"):
        try:
            local = datetime.strptime(raw.strip(), pattern)
        except ValueError:
            continue
        return local.replace(tzinfo=tz).astimezone(UTC)
    raise JqlError(f"Date value '{raw}' for field 'updated' is invalid. Valid formats include: "
                   "'yyyy/MM/dd HH:mm', 'yyyy-MM-dd HH:mm', 'yyyy/MM/dd', 'yyyy-MM-dd', or a period format "
                   "e.g. '-5d', '4w 2d'.")


def _sort_key(order: list[tuple[str, bool]]) -> Any:
    def key(issue: Issue) -> tuple[Any, ...]:
        parts: list[Any] = []
        for name, descending in order or [("created", True)]:
            if name in ("updated", "updateddate"):
                value: Any = issue.updated.timestamp()
            elif name in ("created", "createddate"):
                value = issue.created.timestamp()
            elif name in ("key", "issuekey", "id"):
                value = issue.id
            elif name == "rank":
                value = issue.lexorank
            else:
                value = str(issue.fields.get(name) or "")
            if descending:
                value = -value if isinstance(value, int | float) else "".join(chr(0x10FFFF - ord(c)) for c in value)
            parts.append(value)
        return tuple(parts)

    return key


# --------------------------------------------------------------------------------------------------
# The HTTP application.


def _errors(status: int, *messages: str, errors: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"errorMessages": list(messages), "errors": errors or {}}, status_code=status)


def create_app(site: JiraSite | None = None, state: SandboxState | None = None) -> FastAPI:
    site = site or JiraSite()
    state = state or SandboxState()
    app = FastAPI(title="backlog-sync sandbox: Jira Cloud", docs_url=None, redoc_url=None)
    app.state.site = site
    app.state.sandbox = state
    install_sandbox_plumbing(app, state)

    @app.middleware("http")
    async def authenticate(request: Request, call_next):  # noqa: ANN202
        if request.url.path.startswith("/_sandbox"):
            return await call_next(request)
        if site.deployment == "datacenter" and request.url.path.startswith("/rest/api/3/"):
            return Response("Not Found", status_code=404, media_type="text/plain")  # Data Center serves v2 only
        header = request.headers.get("authorization", "")
        ok = False
        if header.lower().startswith("basic "):
            try:
                user, _, token = base64.b64decode(header[6:]).decode().partition(":")
                ok = hmac.compare_digest(user, site.email) and hmac.compare_digest(token, site.api_token)
            except (binascii.Error, UnicodeDecodeError):
                ok = False
        elif header.lower().startswith("bearer "):
            ok = hmac.compare_digest(header[7:].strip(), site.pat)
        if not ok:
            return Response("Client must be authenticated to access this resource.", status_code=401,
                            media_type="text/plain", headers={"WWW-Authenticate": 'Basic realm="protected-area"'})
        return await call_next(request)

    def server_info() -> dict[str, Any]:
        if site.deployment == "datacenter":
            return {"baseUrl": site.base_url, "version": "10.3.1", "versionNumbers": [10, 3, 1],
                    "deploymentType": "Server", "buildNumber": 10030001, "buildDate": "2026-10-01T00:00:00.000+0000",
                    "serverTime": jira_time(site.now()), "scmInfo": "5f0e1d2c3b4a", "serverTitle": "Jira"}
        return {"baseUrl": site.base_url, "displayUrl": site.base_url, "version": "1001.0.0-SNAPSHOT",
                "versionNumbers": [1001, 0, 0], "deploymentType": "Cloud", "buildNumber": 100282,
                "buildDate": "2026-11-20T00:00:00.000+0000", "serverTime": jira_time(site.now()),
                "scmInfo": "0a1b2c3d4e5f60718293a4b5c6d7e8f901234567", "serverTitle": "Jira",
                "serverTimeZone": "Etc/UTC"}

    app.get("/rest/api/2/serverInfo")(server_info)
    app.get("/rest/api/3/serverInfo")(server_info)

    @app.get("/rest/api/3/myself")
    def myself() -> dict[str, Any]:
        user = site._user(0)
        assert user is not None
        user.update({"emailAddress": site.email, "locale": "en_US", "groups": {"size": 1, "items": []},
                     "applicationRoles": {"size": 1, "items": []}, "expand": "groups,applicationRoles"})
        return user

    @app.get("/rest/api/3/field")
    def fields() -> list[dict[str, Any]]:
        return site.field_list()

    @app.post("/rest/api/3/field", response_model=None)
    async def create_field(request: Request) -> Any:
        body = await request.json()
        name = body.get("name") if isinstance(body, dict) else None
        kind = body.get("type") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name or not isinstance(kind, str):
            return _errors(400, errors={"name": "The custom field name is required."})
        schema_type = "number" if kind.endswith(":float") else "string"
        with site.lock:
            number = 10100 + len(site.custom_fields)
            site.custom_fields.append((f"customfield_{number}", name, schema_type, kind))
        return next(f for f in site.field_list() if f["id"] == f"customfield_{number}")

    @app.get("/rest/api/3/search")
    @app.post("/rest/api/3/search")
    def removed_search() -> JSONResponse:
        # Atlassian removed this endpoint; clients must move to /rest/api/3/search/jql.
        return _errors(410, "The requested API has been removed. Please migrate to the /rest/api/3/search/jql "
                            "API. A full migration guideline is available at "
                            "https://developer.atlassian.com/changelog/#CHANGE-2046")

    def search(params: dict[str, Any]) -> Any:
        jql = params.get("jql")
        if not isinstance(jql, str) or not jql.strip():
            return _errors(400, "The JQL query is unbounded: add a search restriction such as project = X.")
        fields_param = params.get("fields")
        if isinstance(fields_param, str):
            fields_param = [part for part in fields_param.split(",") if part]
        fields_list = [str(name) for name in (fields_param or ["id"])]
        ids_only = all(name in ("id", "key") for name in fields_list)
        wanted: set[str] | None
        if "*all" in fields_list or "*navigable" in fields_list:
            wanted = None
        else:
            wanted = {name for name in fields_list if name not in ("id", "key")}
        try:
            max_results = int(params.get("maxResults") or 50)
        except (TypeError, ValueError):
            return _errors(400, "maxResults must be a number.")
        cap = MAX_RESULTS_IDS if ids_only else MAX_RESULTS
        max_results = max(1, min(max_results, cap))
        token = params.get("nextPageToken")
        with site.lock:
            if token:
                try:
                    snapshot, _, offset_text = base64.urlsafe_b64decode(token.encode()).decode().partition(":")
                    offset = int(offset_text)
                    ids = site.searches[snapshot]
                except (binascii.Error, UnicodeDecodeError, ValueError, KeyError):
                    return _errors(400, "The provided next page token is invalid or expired.")
            else:
                try:
                    query = _Parser(site, _tokens(jql), ZoneInfo(site.user_time_zone)).parse()
                except JqlError as exc:
                    return _errors(400, str(exc))
                matching = [issue for issue in site.issues.values() if query.predicate(issue)]
                matching.sort(key=_sort_key(query.order))
                snapshot = uuid.uuid4().hex[:12]
                ids = [issue.id for issue in matching]
                site.searches[snapshot] = ids
                while len(site.searches) > 64:
                    site.searches.popitem(last=False)
                offset = 0
            page_ids = ids[offset:offset + max_results]
            issues = []
            for issue_id in page_ids:
                issue = site.issues.get(issue_id)
                if issue is None:
                    continue  # deleted since the search began
                if ids_only:  # Jira answers id-only searches without reading the fields
                    issues.append({"id": str(issue.id), "key": issue.key,
                                   "self": f"{site.base_url}/rest/api/3/issue/{issue.id}"})
                    continue
                issues.append(site.render(issue, wanted))
            end = offset + max_results
            is_last = end >= len(ids)
            body: dict[str, Any] = {"issues": issues, "isLast": is_last}
            if not is_last:
                next_token = base64.urlsafe_b64encode(f"{snapshot}:{end}".encode()).decode()
                if state.flags.get("repeat_page_token") and token:
                    next_token = token  # a broken server handing back the same page forever
                body["nextPageToken"] = next_token
        return body

    def search_v2(params: dict[str, Any]) -> Any:
        """Data Center's POST /rest/api/2/search: startAt/maxResults/total, descriptions as wiki text."""
        try:
            start_at = max(0, int(params.get("startAt") or 0))
            max_results = max(1, min(int(params.get("maxResults") or 50), 1000))
        except (TypeError, ValueError):
            return _errors(400, "startAt and maxResults must be numbers.")
        jql = params.get("jql")
        if not isinstance(jql, str) or not jql.strip():
            return _errors(400, "The JQL query is unbounded.")
        fields_list = [str(name) for name in (params.get("fields") or ["*navigable"])]
        wanted = None if "*all" in fields_list or "*navigable" in fields_list else set(fields_list)
        if state.flags.get("repeat_page_token"):
            start_at = 0 if start_at else start_at  # a broken server that ignores startAt
        with site.lock:
            try:
                query = _Parser(site, _tokens(jql), ZoneInfo(site.user_time_zone)).parse()
            except JqlError as exc:
                return _errors(400, str(exc))
            matching = sorted((i for i in site.issues.values() if query.predicate(i)), key=_sort_key(query.order))
            issues = []
            for issue in matching[start_at:start_at + max_results]:
                rendered = site.render(issue, wanted)
                rendered["self"] = rendered["self"].replace("/rest/api/3/", "/rest/api/2/")
                description = rendered["fields"].get("description")
                if isinstance(description, dict):
                    rendered["fields"]["description"] = _wiki(description)
                issues.append(rendered)
        return {"expand": "schema,names", "startAt": start_at, "maxResults": max_results, "total": len(matching),
                "issues": issues}

    @app.post("/rest/api/2/search")
    async def search_v2_post(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return _errors(400, "The request body is not valid JSON.")
        return search_v2(body if isinstance(body, dict) else {})

    app.get("/rest/api/2/myself")(myself)
    app.get("/rest/api/2/field")(fields)

    @app.get("/rest/api/3/search/jql")
    def search_get(request: Request) -> Any:
        params: dict[str, Any] = dict(request.query_params)
        params["fields"] = [part for value in request.query_params.getlist("fields") for part in value.split(",")]
        return search(params)

    @app.post("/rest/api/3/search/jql")
    async def search_post(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return _errors(400, "The request body is not valid JSON.")
        if not isinstance(body, dict):
            return _errors(400, "The request body must be a JSON object.")
        return search(body)

    @app.get("/rest/api/3/issue/{issueIdOrKey}")
    def get_issue(issueIdOrKey: str, request: Request) -> Any:  # noqa: N803
        issue = site.find(issueIdOrKey)
        if issue is None:
            return _errors(404, "Issue does not exist or you do not have permission to see it.")
        fields_param = [part for value in request.query_params.getlist("fields") for part in value.split(",")]
        wanted = None if not fields_param or "*all" in fields_param else set(fields_param)
        with site.lock:
            return site.render(issue, wanted)

    async def _issue_and_body(id_or_key: str, request: Request) -> tuple[Any, Any, JSONResponse | None]:
        """The issue a write names and the request's JSON body, or Jira's 404/400 answer."""
        issue = site.find(id_or_key)
        if issue is None:
            return None, None, _errors(404, "Issue does not exist or you do not have permission to see it.")
        try:
            return issue, await request.json(), None
        except ValueError:
            return issue, None, _errors(400, "The request body is not valid JSON.")

    @app.put("/rest/api/3/issue/{issueIdOrKey}", response_model=None)
    async def edit_issue(issueIdOrKey: str, request: Request) -> Any:  # noqa: N803
        issue, body, refusal = await _issue_and_body(issueIdOrKey, request)
        if refusal is not None:
            return refusal
        updates = body.get("fields") if isinstance(body, dict) else None
        if not isinstance(updates, dict) or not updates:
            return _errors(400, "Specify the fields to edit in 'fields'.")
        problems: dict[str, str] = {}
        for field_id, value in updates.items():
            schema_type = site.custom_type(field_id)
            if schema_type is None and field_id not in ("summary", "labels", "duedate", "description"):
                problems[field_id] = (f"Field '{field_id}' cannot be set. It is not on the appropriate screen, "
                                      "or unknown.")
            elif schema_type == "number" and value is not None and (
                    isinstance(value, bool) or not isinstance(value, int | float)):
                problems[field_id] = "Operation value must be a number."
            elif field_id == "customfield_10072" and value is not None and not _is_adf(value):
                problems[field_id] = "Operation value must be an Atlassian Document."
        if problems:
            return _errors(400, errors=problems)
        changes = []
        with site.lock:
            for field_id, value in updates.items():
                before = issue.fields.get(field_id)
                if before != value:
                    issue.fields[field_id] = value
                    name = next((n for i, n, _, _ in site.custom_fields if i == field_id), field_id)
                    changes.append((field_id, name, before, value))
            site.edits.append({"issue": issue.key, "fields": updates})
            if changes:
                issue.updated = site.now()
        if changes:
            site.notify("jira:issue_updated", issue, changes=changes)
        return Response(status_code=204)

    app.put("/rest/api/2/issue/{issueIdOrKey}", response_model=None)(edit_issue)

    @app.delete("/rest/api/3/issue/{issueIdOrKey}", response_model=None)
    def delete_issue(issueIdOrKey: str) -> Any:  # noqa: N803
        if not site.delete(issueIdOrKey):
            return _errors(404, "Issue does not exist or you do not have permission to see it.")
        return Response(status_code=204)

    @app.post("/rest/api/3/issue/{issueIdOrKey}/comment", response_model=None)
    async def add_comment(issueIdOrKey: str, request: Request) -> Any:  # noqa: N803
        issue, body, refusal = await _issue_and_body(issueIdOrKey, request)
        if refusal is not None:
            return refusal
        document = body.get("body") if isinstance(body, dict) else None
        v2 = request.url.path.startswith("/rest/api/2/")
        if not (isinstance(document, str) and document.strip()) if v2 else not _is_adf(document):
            return _errors(400, errors={"comment": "Comment body is not valid!"})
        with site.lock:
            site.next_comment += 1
            now = jira_time(site.now())
            comment = {"self": f"{site.base_url}/rest/api/3/issue/{issue.id}/comment/{site.next_comment}",
                       "id": str(site.next_comment), "author": site._user(0), "body": document,
                       "updateAuthor": site._user(0), "created": now, "updated": now, "jsdPublic": True}
            issue.comments.append(comment)
            issue.updated = site.now()
        return JSONResponse(comment, status_code=201)

    app.post("/rest/api/2/issue/{issueIdOrKey}/comment", response_model=None)(add_comment)

    @app.put("/rest/agile/1.0/issue/rank")
    async def rank(request: Request) -> Any:
        try:
            body = await request.json()
        except ValueError:
            return _errors(400, "The request body is not valid JSON.")
        keys = body.get("issues") if isinstance(body, dict) else None
        if not isinstance(keys, list) or not keys:
            return _errors(400, "issues: at least one issue is required.")
        if len(keys) > RANK_BATCH:
            return _errors(400, f"issues: at most {RANK_BATCH} issues can be ranked at once.")
        before, after = body.get("rankBeforeIssue"), body.get("rankAfterIssue")
        if bool(before) == bool(after):
            return _errors(400, "Exactly one of rankBeforeIssue and rankAfterIssue is required.")
        with site.lock:
            anchor = site.find(str(before or after))
            if anchor is None:
                return _errors(400, f"Issue {before or after} does not exist.")
            found = [site.find(str(key)) for key in keys]
            entries = []
            movable = [issue for issue in found if issue is not None and issue.id != anchor.id]
            ordered = sorted(site.issues.values(), key=lambda i: i.lexorank)
            others = [i for i in ordered if i not in movable]
            position = others.index(anchor) + (0 if before else 1)
            new_order = others[:position] + movable + others[position:]
            for index, issue in enumerate(new_order):
                issue.lexorank = f"0|i{index * 16:08d}:"
            for key, issue in zip(keys, found, strict=True):
                if issue is None:
                    entries.append({"issueId": 0, "issueKey": str(key), "status": 404,
                                    "errors": ["Issue does not exist or you do not have permission to see it."]})
                else:
                    entries.append({"issueId": issue.id, "issueKey": issue.key, "status": 200})
        if any(entry["status"] != 200 for entry in entries):
            return JSONResponse({"entries": entries}, status_code=207)
        return Response(status_code=204)

    @app.post("/_sandbox/webhooks", include_in_schema=False)
    async def register_webhook(request: Request) -> dict[str, Any]:
        body = await request.json()
        site.register_webhook(body["url"], secret=body.get("secret"), events=body.get("events"))
        return {"ok": True}

    @app.post("/_sandbox/clock", include_in_schema=False)
    async def advance_clock(request: Request) -> dict[str, Any]:
        body = await request.json()
        site.advance(float(body.get("seconds", 0)))
        return {"now": jira_time(site.now())}

    @app.post("/_sandbox/generate", include_in_schema=False)
    async def generate(request: Request) -> dict[str, Any]:
        body = await request.json()
        site.generate(int(body["count"]), project=body.get("project", "MKT"), start=int(body.get("start", 1)))
        return {"issues": len(site.issues)}

    @app.post("/_sandbox/edit", include_in_schema=False)
    async def user_edit(request: Request) -> dict[str, Any]:
        body = await request.json()
        issue = site.set_field(str(body["issue"]), str(body["field"]), body.get("value"))
        return {"key": issue.key, "updated": jira_time(issue.updated)}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serves the emulated Jira until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description="backlog-sync's emulated Jira Cloud site")
    parser.add_argument("--port", type=int, default=8081)
    parser.add_argument("--generate", type=int, default=0, help="also add N generated issues")
    parser.add_argument("--time-zone", default="America/Los_Angeles", help="the API user's time zone")
    parser.add_argument("--deployment", choices=["cloud", "datacenter"], default="cloud")
    args = parser.parse_args(argv)
    site = JiraSite(base_url=f"http://127.0.0.1:{args.port}", user_time_zone=args.time_zone,
                    seed=args.generate == 0, deployment=args.deployment)
    if args.generate:
        site.generate(args.generate)
    print(f"emulated Jira on http://127.0.0.1:{args.port} (basic auth {site.email} / {site.api_token}; "  # noqa: T201
          f"bearer {site.pat}); {len(site.issues)} issues", flush=True)
    uvicorn.run(create_app(site), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
