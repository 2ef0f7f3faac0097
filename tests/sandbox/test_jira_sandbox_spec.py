"""The emulated Jira answers as Atlassian's published specs say: each response the connector relies on is
validated against jira-platform-v3.json or jira-software-agile.json (../shared/specs/)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import requests
from openapi_schema_validator import OAS30Validator

from sandbox.common import ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite, create_app
from tests.specs import JIRA_EXAMPLES, spec_path


@cache
def _load(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


def spec(name: str) -> dict[str, Any]:
    return _load(spec_path(name))


def response_schema(spec_name: str, path: str, method: str, status: str) -> dict[str, Any]:
    document = spec(spec_name)
    operation = document["paths"][path][method]
    content = operation["responses"][status].get("content") or {}
    schema = content.get("application/json", {}).get("schema")
    assert schema is not None, f"{method.upper()} {path} {status} has no JSON schema in {spec_name}"
    # Refs are "#/components/...": give the schema the document's components so they resolve.
    return {**schema, "components": document["components"]}


def validate(spec_name: str, path: str, method: str, response: requests.Response) -> None:
    schema = response_schema(spec_name, path, method, str(response.status_code))
    errors = sorted(OAS30Validator(schema).iter_errors(response.json()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message[:300]}" for e in errors[:5])


@pytest.fixture
def jira() -> Iterator[tuple[str, requests.Session, JiraSite]]:
    site = JiraSite()
    server = ThreadedServer(create_app(site))
    site.base_url = server.url
    server.start()
    session = requests.Session()
    session.auth = (DEFAULT_EMAIL, DEFAULT_TOKEN)
    yield server.url, session, site
    server.stop()


PLATFORM = "jira-platform-v3.json"
AGILE = "jira-software-agile.json"


def test_metadata_endpoints_follow_the_spec(jira) -> None:
    url, session, _ = jira
    for path in ("/rest/api/3/serverInfo", "/rest/api/3/myself", "/rest/api/3/field"):
        response = session.get(url + path, timeout=10)
        assert response.status_code == 200
        validate(PLATFORM, path, "get", response)
    assert session.get(url + "/rest/api/3/serverInfo", timeout=10).json()["deploymentType"] == "Cloud"


@pytest.mark.parametrize("method", ["get", "post"])
def test_search_jql_pages_follow_the_spec(jira, method: str) -> None:
    url, session, site = jira
    token = None
    seen = 0
    while True:
        params = {"jql": "project = MKT ORDER BY updated ASC", "maxResults": 7, "fields": "*all"}
        if token:
            params["nextPageToken"] = token
        if method == "get":
            response = session.get(url + "/rest/api/3/search/jql", params=params, timeout=10)
        else:
            response = session.post(url + "/rest/api/3/search/jql", json={**params, "fields": ["*all"]}, timeout=10)
        assert response.status_code == 200, response.text
        validate(PLATFORM, "/rest/api/3/search/jql", method, response)
        body = response.json()
        seen += len(body["issues"])
        if body["isLast"]:
            assert "nextPageToken" not in body
            break
        token = body["nextPageToken"]
    assert seen == sum(1 for issue in site.issues.values() if issue.project == "MKT")


def test_issue_edit_comment_and_rank_follow_the_spec(jira) -> None:
    url, session, site = jira
    issue = session.get(url + "/rest/api/3/issue/MKT-2", timeout=10)
    assert issue.status_code == 200
    validate(PLATFORM, "/rest/api/3/issue/{issueIdOrKey}", "get", issue)

    edit = session.put(url + "/rest/api/3/issue/MKT-2", json={"fields": {"customfield_10070": 42.5}}, timeout=10)
    assert edit.status_code == 204 and not edit.content
    assert site.find("MKT-2").fields["customfield_10070"] == 42.5

    example = json.loads((JIRA_EXAMPLES / "comment_add_request_adf.json").read_text())
    comment = session.post(url + "/rest/api/3/issue/MKT-2/comment", json=example, timeout=10)
    assert comment.status_code == 201
    validate(PLATFORM, "/rest/api/3/issue/{issueIdOrKey}/comment", "post", comment)

    moved = session.put(url + "/rest/agile/1.0/issue/rank",
                        json={"issues": ["MKT-3", "MKT-99"], "rankBeforeIssue": "MKT-1"}, timeout=10)
    assert moved.status_code == 207
    # The Agile spec gives the 207 only as an example, no schema: match the example's shape field by field.
    example_207 = json.loads(
        spec(AGILE)["paths"]["/rest/agile/1.0/issue/rank"]["put"]["responses"]["207"]["content"][
            "application/json"]["example"])
    shape = {key: type(value) for entry in example_207["entries"] for key, value in entry.items()}
    assert set(moved.json()) == {"entries"}
    for entry in moved.json()["entries"]:
        assert {key: type(value) for key, value in entry.items()}.items() <= shape.items(), entry
    entries = {entry["issueKey"]: entry["status"] for entry in moved.json()["entries"]}
    assert entries == {"MKT-3": 200, "MKT-99": 404}
    ordered = [i.key for i in sorted(site.issues.values(), key=lambda i: i.lexorank)]
    assert ordered.index("MKT-3") == ordered.index("MKT-1") - 1


def test_refusals_are_shaped_like_jira_s(jira) -> None:
    url, session, _ = jira
    assert session.get(url + "/rest/api/3/search", params={"jql": "project = MKT"}, timeout=10).status_code == 410
    bad_jql = session.post(url + "/rest/api/3/search/jql", json={"jql": "project = = MKT"}, timeout=10)
    assert bad_jql.status_code == 400 and bad_jql.json()["errorMessages"]
    unknown = session.put(url + "/rest/api/3/issue/MKT-2", json={"fields": {"customfield_99999": 1}}, timeout=10)
    assert unknown.status_code == 400 and "customfield_99999" in unknown.json()["errors"]
    not_a_number = session.put(url + "/rest/api/3/issue/MKT-2", json={"fields": {"customfield_10070": "12"}},
                               timeout=10)
    assert not_a_number.status_code == 400
    too_many = session.put(url + "/rest/agile/1.0/issue/rank",
                           json={"issues": [f"MKT-{n}" for n in range(2, 53)], "rankAfterIssue": "MKT-1"}, timeout=10)
    assert too_many.status_code == 400
    assert requests.get(url + "/rest/api/3/myself", auth=(DEFAULT_EMAIL, "wrong"), timeout=10).status_code == 401
