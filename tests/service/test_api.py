"""The admin API over a real full sync of the emulated Jira: ranked and filtered items, one item's story, inputs
and problems, sources and their health, runs, manual syncs, the probes and the refusal of an unmigrated database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from sandbox.common import ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite
from sandbox.jira import create_app as create_jira
from service.api import create_app
from service.config import AppConfig, Settings
from service.db import NotMigratedError, make_engine

ADMIN_TOKEN = "admin-token-of-the-api-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
SOURCE = "mkt"


@dataclass
class Jira:
    site: JiraSite
    app: FastAPI  # the emulated Jira's app: app.state.sandbox injects faults
    url: str


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[Jira]:
    monkeypatch.setenv("API_TEST_JIRA_TOKEN", DEFAULT_TOKEN)
    site = JiraSite()
    app = create_jira(site)
    server = ThreadedServer(app)
    site.base_url = server.url
    server.start()
    yield Jira(site=site, app=app, url=server.url)
    server.stop()


def make_config(jira_url: str, **source: Any) -> AppConfig:
    return AppConfig.model_validate({
        "sources": [{
            "name": SOURCE, "kind": "jira", "base_url": jira_url, "jql": "project = MKT",
            "auth": {"email": DEFAULT_EMAIL, "token": {"env": "API_TEST_JIRA_TOKEN"}},
            **source,
        }],
    })


def make_app(engine: Engine, jira_url: str, *, start_scheduler: bool = False, **source: Any) -> FastAPI:
    settings = Settings(admin_token=ADMIN_TOKEN, database_url=str(engine.url), backlog_sync_env="production")
    return create_app(settings=settings, config=make_config(jira_url, **source), engine=engine,
                      start_scheduler=start_scheduler)


@pytest.fixture
def synced(engine: Engine, jira: Jira) -> Iterator[tuple[TestClient, FastAPI]]:
    """The daemon's app (no scheduler) after one real full sync of the emulated Jira."""
    app = make_app(engine, jira.url)
    with TestClient(app) as client:
        result = app.state.sync.run(SOURCE, mode="full", trigger="cli")
        assert result.status == "succeeded", result.error
        assert result.items_seen == 42
        yield client, app


def all_items(client: TestClient, **params: Any) -> dict[str, Any]:
    response = client.get("/api/items", headers=AUTH, params={"limit": 500, **params})
    assert response.status_code == 200, response.text
    return response.json()


def wait_for(condition: Any, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.05)
    return None


# --- items -------------------------------------------------------------------------------------------


def test_items_are_sorted_by_rank_with_unranked_items_last(synced, jira: Jira) -> None:
    client, _ = synced
    body = all_items(client)
    items = body["data"]
    assert body["count"] == len(items) == sum(1 for issue in jira.site.issues.values() if issue.project == "MKT")
    ranks = [item["rank"] for item in items]
    ranked = [rank for rank in ranks if rank is not None]
    assert ranked and None in ranks, "the seed has both ranked (open) and unranked (done, unscorable) items"
    assert ranks == ranked + [None] * (len(ranks) - len(ranked)), "unranked items come after every ranked one"
    assert ranked == list(range(1, len(ranked) + 1))
    # Rank follows the score: a higher rank never has a lower score.
    scores = [item["score"] for item in items if item["rank"] is not None]
    assert scores == sorted(scores, reverse=True)
    # Unranked items are ordered too (by id), so paging through them is stable.
    unranked_ids = [item["external_id"] for item in items if item["rank"] is None]
    assert unranked_ids == sorted(unranked_ids)
    assert items[0]["key"] == "MKT-13" and items[0]["source"] == SOURCE


def test_items_filter_by_source_type_and_status(synced) -> None:
    client, _ = synced
    everything = all_items(client)["data"]

    assert all_items(client, source=SOURCE)["count"] == len(everything)
    assert all_items(client, source="no-such-source") == {"data": [], "count": 0}

    types = {item["item_type"] for item in everything}
    statuses = {item["status"] for item in everything}
    assert len(types) >= 4 and len(statuses) >= 3
    for item_type in types:
        body = all_items(client, type=item_type)
        expected = [item["external_id"] for item in everything if item["item_type"] == item_type]
        assert body["count"] == len(expected)
        assert [item["external_id"] for item in body["data"]] == expected, "a filter keeps the rank order"
    for status in statuses:
        body = all_items(client, status=status)
        expected = [item["external_id"] for item in everything if item["status"] == status]
        assert body["count"] == len(expected) and {i["status"] for i in body["data"]} == {status}
        assert [item["external_id"] for item in body["data"]] == expected

    both = all_items(client, source=SOURCE, type="experiment", status="backlog")
    expected = [i["external_id"] for i in everything if i["item_type"] == "experiment" and i["status"] == "backlog"]
    assert expected and [i["external_id"] for i in both["data"]] == expected and both["count"] == len(expected)
    assert all_items(client, type="experiment", status="no-such-status") == {"data": [], "count": 0}


def test_pagination_pages_through_everything_once_with_the_same_total(synced) -> None:
    client, _ = synced
    everything = [item["external_id"] for item in all_items(client)["data"]]
    seen: list[str] = []
    offset = 0
    while True:
        response = client.get("/api/items", headers=AUTH, params={"limit": 5, "offset": offset})
        assert response.status_code == 200
        body = response.json()
        assert body["count"] == len(everything), "count is the total, not the page's size"
        if not body["data"]:
            break
        assert len(body["data"]) <= 5
        seen += [item["external_id"] for item in body["data"]]
        offset += 5
    assert seen == everything

    # The total of a filtered listing is the filter's, on every page.
    open_items = all_items(client, status="backlog")
    page = client.get("/api/items", headers=AUTH, params={"status": "backlog", "limit": 2, "offset": 2}).json()
    assert page["count"] == open_items["count"]
    assert [i["external_id"] for i in page["data"]] == [i["external_id"] for i in open_items["data"][2:4]]

    beyond = client.get("/api/items", headers=AUTH, params={"offset": 10_000}).json()
    assert beyond == {"data": [], "count": len(everything)}
    assert len(client.get("/api/items", headers=AUTH).json()["data"]) == min(50, len(everything))
    for bad in ({"limit": 0}, {"limit": 501}, {"offset": -1}, {"limit": "ten"}):
        assert client.get("/api/items", headers=AUTH, params=bad).status_code == 422, bad


def test_an_item_shows_its_story_inputs_and_problems(synced) -> None:
    client, _ = synced
    items = all_items(client)["data"]
    listed = {item["title"]: item for item in items}
    chatbot = listed["Chatbot on the pricing page"]

    response = client.get(f"/api/items/{SOURCE}/{chatbot['external_id']}", headers=AUTH)
    assert response.status_code == 200
    detail = response.json()
    assert detail["key"] == chatbot["key"] and detail["title"] == "Chatbot on the pricing page"
    assert detail["story"]["role"] == "sales lead"
    assert detail["story"]["want"] == "a chatbot on the pricing page"
    assert detail["story"]["so_that"] == "visitors get answers at once"
    # Reach was typed as "high" in a number field: it is reported, not guessed, and the item is not scored.
    assert detail["inputs"]["reach"] is None and detail["inputs"]["effort"] == 5.0
    reach_problems = [p for p in detail["problems"] if p["field"] == "reach"]
    assert reach_problems and any(p.get("value") == "high" for p in reach_problems)
    assert detail["score"] is None and detail["rank"] is None
    assert detail["problem_count"] == len(detail["problems"]) == chatbot["problem_count"] > 0
    assert detail["description"].startswith("As a sales lead")
    assert detail["synced_at"] is not None

    top = items[0]
    detail = client.get(f"/api/items/{SOURCE}/{top['external_id']}", headers=AUTH).json()
    assert detail["problems"] == [] and detail["problem_count"] == 0
    assert detail["score"] == top["score"] and detail["rank"] == 1
    assert detail["inputs"]["reach"] is not None


def test_an_unknown_item_is_a_404_that_says_what_was_not_found(synced) -> None:
    client, _ = synced
    response = client.get(f"/api/items/{SOURCE}/999999", headers=AUTH)
    assert response.status_code == 404
    assert response.json()["detail"] == f"no item '999999' in source '{SOURCE}'"
    existing = all_items(client)["data"][0]["external_id"]
    response = client.get(f"/api/items/other-source/{existing}", headers=AUTH)
    assert response.status_code == 404 and "other-source" in response.json()["detail"]


# --- sources and runs --------------------------------------------------------------------------------


def test_sources_show_their_state_and_last_success(engine: Engine, jira: Jira) -> None:
    app = make_app(engine, jira.url)
    with TestClient(app) as client:
        before = client.get("/api/sources", headers=AUTH)
        assert before.status_code == 200
        [source] = before.json()
        assert source["name"] == SOURCE and source["kind"] == "jira" and source["state"] == "active"
        assert source["last_success_at"] is None and source["items_count"] == 0 and source["pending_writes"] == 0

        result = app.state.sync.run(SOURCE, mode="full", trigger="cli")
        assert result.status == "succeeded"
        [source] = client.get("/api/sources", headers=AUTH).json()
        assert source["state"] == "active" and source["needs_credentials"] is False
        assert source["last_success_at"] is not None and source["last_error"] is None
        assert source["consecutive_failures"] == 0
        assert source["items_count"] == 42 and source["cursor_updated_at"] is not None
        assert source["pending_writes"] == result.writes_planned > 0  # planned, not sent yet


def test_a_401_from_jira_leaves_the_source_needing_credentials(synced, jira: Jira) -> None:
    client, app = synced
    [healthy] = client.get("/api/sources", headers=AUTH).json()
    assert healthy["state"] == "active"

    jira.app.state.sandbox.inject(route="*", status=401, times=-1)
    result = app.state.sync.run(SOURCE, mode="full", trigger="cli")
    assert result.status == "failed"

    [source] = client.get("/api/sources", headers=AUTH).json()
    assert source["state"] == "needs_credentials" and source["needs_credentials"] is True
    assert "credentials" in source["last_error"] and "401" in source["last_error"]
    assert source["last_error_at"] is not None and source["consecutive_failures"] == 1
    assert source["last_success_at"] == healthy["last_success_at"], "the last success is kept"
    assert source["items_count"] == 42, "the stored backlog stays"
    newest = client.get("/api/runs", headers=AUTH).json()["data"][0]
    assert newest["status"] == "failed" and newest["error"] == source["last_error"]


def test_a_manual_sync_is_accepted_and_runs(engine: Engine, jira: Jira) -> None:
    # No scheduled job: the only sync that runs is the one the API asks for.
    app = make_app(engine, jira.url, start_scheduler=True, schedule={"enabled": False})
    with TestClient(app) as client:
        response = client.post(f"/api/sources/{SOURCE}/sync", headers=AUTH, params={"mode": "full"})
        assert response.status_code == 202
        assert response.json() == {"source": SOURCE, "mode": "full", "status": "queued"}

        def finished_run() -> dict[str, Any] | None:
            runs = client.get("/api/runs", headers=AUTH).json()["data"]
            return next((r for r in runs if r["trigger"] == "api" and r["status"] != "running"), None)

        run = wait_for(finished_run)
        assert run is not None, "the queued sync never ran"
        assert run["status"] == "succeeded" and run["mode"] == "full" and run["items_seen"] == 42
        assert all_items(client)["count"] == 42

        unknown = client.post("/api/sources/nope/sync", headers=AUTH)
        assert unknown.status_code == 404 and unknown.json()["detail"] == "no source named 'nope'"
        assert client.post(f"/api/sources/{SOURCE}/sync", headers=AUTH,
                           params={"mode": "everything"}).status_code == 422


def test_a_manual_sync_without_the_scheduler_is_still_answered(synced) -> None:
    client, _ = synced
    response = client.post(f"/api/sources/{SOURCE}/sync", headers=AUTH)
    assert response.status_code == 202
    assert response.json() == {"source": SOURCE, "mode": "incremental", "status": "queued"}
    assert client.post("/api/sources/unknown/sync", headers=AUTH).status_code == 404


def test_runs_are_listed_newest_first_with_their_counts(synced) -> None:
    client, app = synced
    second = app.state.sync.run(SOURCE, mode="incremental", trigger="cli")
    assert second.status == "succeeded"

    body = client.get("/api/runs", headers=AUTH).json()
    assert body["count"] == 2 and len(body["data"]) == 2
    newest, first = body["data"]
    assert newest["id"] > first["id"] and newest["id"] == second.run_id
    assert first["mode"] == "full" and first["trigger"] == "cli" and first["status"] == "succeeded"
    assert first["items_seen"] == 42 and first["items_changed"] == 42 and first["pages"] >= 1
    assert first["items_with_problems"] >= 1 and first["writes_planned"] > 0
    assert first["finished_at"] is not None and first["error"] is None
    assert newest["items_changed"] == second.items_changed and newest["items_seen"] == second.items_seen

    assert client.get("/api/runs", headers=AUTH, params={"source": SOURCE}).json()["count"] == 2
    assert client.get("/api/runs", headers=AUTH, params={"source": "other"}).json() == {"data": [], "count": 0}
    page = client.get("/api/runs", headers=AUTH, params={"limit": 1, "offset": 1}).json()
    assert page["count"] == 2 and [r["id"] for r in page["data"]] == [first["id"]]


# --- probes, docs, an unmigrated database ------------------------------------------------------------


def test_health_and_ready_answer_without_a_token(synced) -> None:
    client, _ = synced
    health = client.get("/health")
    assert health.status_code == 200 and health.json()["status"] == "ok"
    ready = client.get("/ready")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert client.get("/api/items").status_code == 401, "while the admin routes still need one"


def test_ready_is_503_and_start_up_refused_on_an_unmigrated_database(tmp_path: Path, jira: Jira) -> None:
    empty = make_engine(f"sqlite:///{tmp_path / 'never-migrated.db'}")
    try:
        app = make_app(empty, jira.url)
        client = TestClient(app)  # not entered: the lifespan (which refuses this database) does not run
        ready = client.get("/ready")
        assert ready.status_code == 503
        assert ready.json()["status"] == "not ready" and "backlog-sync db upgrade" in ready.json()["detail"]
        assert client.get("/health").status_code == 200

        with pytest.raises(NotMigratedError, match="backlog-sync db upgrade"):
            with TestClient(make_app(empty, jira.url)):
                pass
    finally:
        empty.dispose()


def test_docs_and_openapi_are_served(synced) -> None:
    client, _ = synced
    docs = client.get("/docs")
    assert docs.status_code == 200 and "swagger-ui" in docs.text.lower()
    spec = client.get("/openapi.json")
    assert spec.status_code == 200
    paths = spec.json()["paths"]
    for path in ("/api/items", "/api/items/{source}/{external_id}", "/api/sources", "/api/sources/{name}/sync",
                 "/api/runs", "/health", "/ready"):
        assert path in paths, path
    assert "post" in paths["/api/sources/{name}/sync"]
    assert "Bearer" in spec.json()["info"]["description"]
