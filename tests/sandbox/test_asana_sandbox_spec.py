"""The emulated Asana answers as Asana's published OpenAPI spec says: each response the connector relies on is
validated against asana.yaml (../shared/specs/)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from typing import Any

import pytest
import requests
import yaml
from openapi_schema_validator import OAS30Validator

from sandbox.asana import DEFAULT_TOKEN, AsanaWorkspace, create_app
from sandbox.asana_data import EN_PROJECT, FR_PROJECT
from sandbox.common import ThreadedServer
from tests.specs import spec_path

SPEC = "asana.yaml"


@cache
def spec() -> dict[str, Any]:
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(spec_path(SPEC).read_text(encoding="utf-8"), Loader=loader)  # noqa: S506 - a safe loader


def response_schema(path: str, method: str, status: int) -> dict[str, Any]:
    document = spec()
    response = document["paths"][path][method]["responses"][status]
    if "$ref" in response:  # "#/components/responses/NotFound"
        response = document["components"]["responses"][response["$ref"].rsplit("/", 1)[1]]
    schema = (response.get("content") or {}).get("application/json", {}).get("schema")
    assert schema is not None, f"{method.upper()} {path} {status} has no JSON schema in {SPEC}"
    return {**schema, "components": document["components"]}


def validate(path: str, method: str, response: requests.Response) -> None:
    schema = response_schema(path, method, response.status_code)
    errors = sorted(OAS30Validator(schema).iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])


@pytest.fixture
def asana() -> Iterator[tuple[str, requests.Session, AsanaWorkspace]]:
    workspace = AsanaWorkspace()
    workspace.generate(120)
    server = ThreadedServer(create_app(workspace))
    workspace.base_url = server.url
    server.start()
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {DEFAULT_TOKEN}"
    yield server.url, session, workspace
    server.stop()


TASK_FIELDS = ("name,notes,permalink_url,completed,created_at,modified_at,due_on,assignee.name,tags.name,"
               "memberships.project.name,memberships.section.name,custom_fields.name,custom_fields.number_value,"
               "custom_fields.text_value,custom_fields.enum_value.name,custom_fields.display_value")


def test_project_and_custom_field_settings_follow_the_spec(asana) -> None:
    url, session, _ = asana
    for project in (EN_PROJECT, FR_PROJECT):
        response = session.get(f"{url}/projects/{project}", params={"opt_fields": "name,workspace.gid"}, timeout=10)
        assert response.status_code == 200
        validate("/projects/{project_gid}", "get", response)
        settings = session.get(f"{url}/projects/{project}/custom_field_settings", params={"limit": 100}, timeout=10)
        assert settings.status_code == 200
        validate("/projects/{project_gid}/custom_field_settings", "get", settings)
        names = {s["custom_field"]["name"] for s in settings.json()["data"]}
        assert {"Type", "Marketing score", "Marketing rank"} <= names


def test_task_pages_follow_the_spec_and_page_by_offset(asana) -> None:
    url, session, workspace = asana
    offset, seen = None, 0
    while True:
        params = {"limit": 50, "opt_fields": TASK_FIELDS, **({"offset": offset} if offset else {})}
        response = session.get(f"{url}/projects/{EN_PROJECT}/tasks", params=params, timeout=10)
        assert response.status_code == 200, response.text
        validate("/projects/{project_gid}/tasks", "get", response)
        body = response.json()
        seen += len(body["data"])
        if body["next_page"] is None:
            break
        offset = body["next_page"]["offset"]
    assert seen == sum(1 for t in workspace.tasks.values() if EN_PROJECT in t.projects)

    since = session.get(f"{url}/tasks", params={"project": FR_PROJECT, "modified_since": "2020-01-01T00:00:00Z",
                                               "limit": 100, "opt_fields": TASK_FIELDS}, timeout=10)
    assert since.status_code == 200
    validate("/tasks", "get", since)
    assert len(since.json()["data"]) == sum(1 for t in workspace.tasks.values() if FR_PROJECT in t.projects)


def test_task_read_update_and_comment_follow_the_spec(asana) -> None:
    url, session, workspace = asana
    gid = "1203000000000001"
    task = session.get(f"{url}/tasks/{gid}", params={"opt_fields": TASK_FIELDS}, timeout=10)
    assert task.status_code == 200
    validate("/tasks/{task_gid}", "get", task)

    example = json.loads((spec_path(SPEC).parent / "examples" / "asana" /
                          "task_update_custom_fields_request.json").read_text())
    assert set(example["data"]) == {"custom_fields"}  # the shape we send: {"data": {"custom_fields": {gid: value}}}
    score = workspace.field_gid("Marketing score")
    updated = session.put(f"{url}/tasks/{gid}", json={"data": {"custom_fields": {score: 42.5}}}, timeout=10)
    assert updated.status_code == 200, updated.text
    validate("/tasks/{task_gid}", "put", updated)
    assert workspace.tasks[gid].custom_fields[score] == 42.5

    story = session.post(f"{url}/tasks/{gid}/stories", json={"data": {"text": "KPI on track"}}, timeout=10)
    assert story.status_code == 201
    validate("/tasks/{task_gid}/stories", "post", story)


def test_a_task_s_stories_follow_the_spec_comments_and_field_changes(asana) -> None:
    url, session, workspace = asana
    gid = "1203000000000001"
    for text in ("First result", "Résultat KPI : 80 % 🎯"):
        assert session.post(f"{url}/tasks/{gid}/stories", json={"data": {"text": text}}, timeout=10).status_code == 201
    workspace.set_field(gid, "Reach", 4321, notify=False)  # leaves a system story, as Asana does
    stories = session.get(f"{url}/tasks/{gid}/stories", params={"limit": 100}, timeout=10)
    assert stories.status_code == 200
    validate("/tasks/{task_gid}/stories", "get", stories)
    data = stories.json()["data"]
    assert [(s["resource_subtype"], s["text"]) for s in data] == [  # oldest first
        ("comment_added", "First result"), ("comment_added", "Résultat KPI : 80 % 🎯"),
        ("number_custom_field_changed", "changed Reach to 4321")]
    some = session.get(f"{url}/tasks/{gid}/stories", params={"limit": 2, "opt_fields": "resource_subtype,text"},
                       timeout=10)
    validate("/tasks/{task_gid}/stories", "get", some)
    assert set(some.json()["data"][0]) == {"gid", "resource_type", "resource_subtype", "text"}
    rest = session.get(f"{url}/tasks/{gid}/stories", timeout=10,
                       params={"limit": 2, "offset": some.json()["next_page"]["offset"]})
    assert [s["text"] for s in rest.json()["data"]] == ["changed Reach to 4321"]
    missing = session.get(f"{url}/tasks/999/stories", timeout=10)
    assert missing.status_code == 404
    validate("/tasks/{task_gid}/stories", "get", missing)


def test_events_follow_the_spec_with_sync_tokens(asana) -> None:
    url, session, workspace = asana
    first = session.get(f"{url}/events", params={"resource": EN_PROJECT}, timeout=10)
    assert first.status_code == 412
    validate("/events", "get", first)
    token = first.json()["sync"]
    for n in range(150):
        workspace.set_field("1203000000000001", "Reach", 1000 + n, notify=False)
    page = session.get(f"{url}/events", params={"resource": EN_PROJECT, "sync": token}, timeout=10)
    assert page.status_code == 200
    validate("/events", "get", page)
    assert len(page.json()["data"]) == 100 and page.json()["has_more"] is True
    rest = session.get(f"{url}/events", params={"resource": EN_PROJECT, "sync": page.json()["sync"]}, timeout=10)
    assert len(rest.json()["data"]) == 50 and rest.json()["has_more"] is False

    workspace.expire_sync_tokens()
    expired = session.get(f"{url}/events", params={"resource": EN_PROJECT, "sync": rest.json()["sync"]}, timeout=10)
    assert expired.status_code == 412
    assert expired.json()["errors"][0]["message"].startswith("Sync token invalid or too old")


def test_refusals_are_shaped_like_asana_s(asana) -> None:
    url, session, workspace = asana
    missing = session.get(f"{url}/tasks/999", timeout=10)
    assert missing.status_code == 404
    validate("/tasks/{task_gid}", "get", missing)
    bad = session.put(f"{url}/tasks/1203000000000001", json={"data": {"custom_fields": {"123": 1}}}, timeout=10)
    assert bad.status_code == 400
    validate("/tasks/{task_gid}", "put", bad)
    unauthorised = requests.get(f"{url}/tasks/1203000000000001", headers={"Authorization": "Bearer nope"},
                                timeout=10)
    assert unauthorised.status_code == 401
    validate("/tasks/{task_gid}", "get", unauthorised)
    workspace.requests_per_minute = 2
    answers = [session.get(f"{url}/projects/{EN_PROJECT}", timeout=10) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert int(answers[-1].headers["Retry-After"]) >= 1
    assert answers[-1].json()["errors"][0]["message"].startswith("You've made too many requests")
    assert workspace.violations == 1


def test_the_token_s_user_and_a_hidden_task_answer_as_the_spec_says(asana) -> None:
    url, session, workspace = asana
    me = session.get(f"{url}/users/me", params={"opt_fields": "gid"}, timeout=10)
    assert me.status_code == 200 and me.json()["data"]["gid"] == workspace.me["gid"]
    validate("/users/{user_gid}", "get", me)
    workspace.hidden_tasks.add("1203000000000001")
    hidden = session.get(f"{url}/tasks/1203000000000001", timeout=10)
    assert hidden.status_code == 403
    validate("/tasks/{task_gid}", "get", hidden)
