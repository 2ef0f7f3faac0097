"""Asana through the sync service, on SQLite and PostgreSQL: the config is accepted and validated, an expired
sync token means a modified_since read (never silence), the periodic reconcile notices tasks deleted or removed
from the projects that no event told us about, and cursors stay opaque JSON per project."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import yaml
from sqlalchemy import select

from connectors.base import FatalError
from sandbox.asana import DEFAULT_TOKEN, AsanaWorkspace, create_app
from sandbox.asana_data import EN_PROJECT, FR_PROJECT
from sandbox.common import SandboxState, ThreadedServer
from service.config import AppConfig, ConfigError, load_config
from service.db import session_scope
from service.outbox import OutboxWorker
from service.sync import SyncService
from service.tables import ItemRow, OutboxRow, SourceRow
from tests.contract.harness import FAST_RETRIES


@pytest.fixture
def asana(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[AsanaWorkspace, SandboxState, str]]:
    monkeypatch.setenv("SYNC_ASANA_TOKEN", DEFAULT_TOKEN)
    workspace = AsanaWorkspace()
    app = create_app(workspace)
    server = ThreadedServer(app)
    workspace.base_url = server.url
    server.start()
    yield workspace, app.state.sandbox, server.url
    server.stop()


def source(url: str, **extra) -> dict:
    return {"name": "mkt", "kind": "asana", "base_url": url, "token": {"env": "SYNC_ASANA_TOKEN"},
            "projects": [EN_PROJECT, FR_PROJECT], "plan": "paid", "schedule": {"reconcile_every": 1000}, **extra}


@contextmanager
def syncing(engine, url: str, **extra) -> Iterator[SyncService]:
    """A sync service over the emulated Asana with one source (`source(url, **extra)`), closed afterwards."""
    sync = SyncService(engine=engine, config=AppConfig.model_validate({"sources": [source(url, **extra)]}),
                       policy=FAST_RETRIES)
    try:
        yield sync
    finally:
        sync.close()


def stored_ids(engine) -> set[str]:
    with session_scope(engine) as db:
        return set(db.execute(select(ItemRow.external_id).where(ItemRow.source == "mkt")).scalars())


def test_an_asana_config_is_accepted_and_checked(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SYNC_ASANA_TOKEN", "x")
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump({"sources": [source("https://app.asana.com/api/1.0")]}))
    assert load_config(path).sources[0].kind == "asana"
    path.write_text(yaml.safe_dump({"sources": [source("https://app.asana.com/api/1.0", plan="enterprise")]}))
    with pytest.raises(ConfigError) as error:
        load_config(path)
    assert any("sources[0].plan" in problem for problem in error.value.problems), error.value.problems
    path.write_text(yaml.safe_dump({"sources": [{**source("https://x"), "projects": []}]}))
    with pytest.raises(ConfigError, match=r"sources\[0\].projects"):
        load_config(path)


def test_expired_tokens_then_reconcile_find_what_events_did_not(asana, engine) -> None:
    workspace, state, url = asana
    with syncing(engine, url) as sync:
        first = sync.run("mkt", mode="full", trigger="cli")
        assert first.status == "succeeded", first.error
        assert stored_ids(engine) == set(workspace.tasks)
        OutboxWorker(engine=engine, sync_service=sync).drain()
        with session_scope(engine) as db:
            cursor = json.loads(db.get(SourceRow, "mkt").cursor)
        assert set(cursor["projects"]) == {EN_PROJECT, FR_PROJECT}

        # The tokens expire, and meanwhile a task is deleted, one leaves the projects and one is edited.
        workspace.expire_sync_tokens()
        workspace.delete("1203000000000005")
        workspace.remove_from_project("1203000000000006", EN_PROJECT)
        workspace.set_field("1203000000000007", "Reach", 123456)
        listed = state.hits("GET", "/tasks")
        incremental = sync.run("mkt", trigger="cli")
        assert incremental.status == "succeeded", incremental.error
        assert state.hits("GET", "/tasks") == listed + 2  # a modified_since read of each project
        with session_scope(engine) as db:
            edited = db.execute(select(ItemRow).where(ItemRow.external_id == "1203000000000007")).scalar_one()
            assert edited.inputs["reach"] == 123456
            assert db.execute(select(OutboxRow).where(OutboxRow.external_id == "1203000000000007",
                                                      OutboxRow.status == "pending")).first() is not None
        # A modified_since read cannot see a deletion: both are still stored until the reconcile.
        assert {"1203000000000005", "1203000000000006"} <= stored_ids(engine)

        reconcile = sync.run("mkt", mode="reconcile", trigger="cli")
        assert reconcile.status == "succeeded", reconcile.error
        assert reconcile.items_removed == 2
        assert stored_ids(engine) == set(workspace.tasks) - {"1203000000000006"}


def test_an_unknown_project_pauses_the_source_with_a_clear_reason(asana, engine) -> None:
    _, state, url = asana
    with syncing(engine, url, projects=[EN_PROJECT, "999"]) as sync:
        result = sync.run("mkt", mode="full", trigger="cli")
    assert result.status == "failed"
    error = result.error or ""
    assert error.startswith("paused:") and "'999'" in error and "sources[].projects" in error and "HTTP 404" in error
    assert state.hits("GET", "/projects/{project_gid}") == 2  # the known project, then the unknown one, once
    with session_scope(engine) as db:
        assert db.get(SourceRow, "mkt").state == "paused"  # not retried until the config changes


def test_a_score_field_without_two_decimals_pauses_the_source_saying_what_to_set(asana, engine) -> None:
    workspace, _, url = asana
    score = next(gid for gid, spec in workspace.custom_fields.items() if spec["name"] == "Marketing score")
    workspace.custom_fields[score]["precision"] = 0
    with syncing(engine, url) as sync:
        result = sync.run("mkt", mode="full", trigger="cli")
    assert result.status == "failed"
    assert "'Marketing score'" in (result.error or "") and "precision 0" in (result.error or "")
    assert not stored_ids(engine)
    with session_scope(engine) as db:
        assert db.get(SourceRow, "mkt").state == "paused"  # not retried forever: the config must change


def test_no_projects_is_a_fatal_error() -> None:
    from connectors.asana import AsanaConnector

    with pytest.raises(FatalError, match="no projects"):
        AsanaConnector(base_url="http://127.0.0.1:1", token="t", projects=[" "])


def test_a_comment_goes_through_the_outbox_as_a_story(asana, engine) -> None:
    workspace, state, url = asana
    with syncing(engine, url) as sync:
        assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
        OutboxWorker(engine=engine, sync_service=sync).drain()
        with session_scope(engine) as db:
            db.add(OutboxRow(source="mkt", external_id="1203000000000001", field="comment",
                             value="KPI newsletter-revenue: 82% of the Q1 target"))
        drained = OutboxWorker(engine=engine, sync_service=sync).drain()
    assert drained.sent == 1 and drained.failed == 0, drained.errors
    assert state.hits("POST", "/tasks/{task_gid}/stories") == 1
    assert workspace.tasks["1203000000000001"].stories[-1]["text"] == "KPI newsletter-revenue: 82% of the Q1 target"


def test_a_full_sync_reconciles_with_the_tasks_it_read_instead_of_listing_them_again(asana, engine) -> None:
    workspace, state, url = asana
    listing = "/projects/{project_gid}/tasks"
    with syncing(engine, url) as sync:
        assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
        assert stored_ids(engine) == set(workspace.tasks)
        # Deleted in Asana, and no event read: only a reconcile can notice it.
        workspace.delete("1203000000000005")
        before = state.hits("GET", listing)
        again = sync.run("mkt", mode="full", trigger="cli")
        assert again.status == "succeeded", again.error
        assert again.items_removed == 1
        assert stored_ids(engine) == set(workspace.tasks)
        # One page of tasks per project (each holds fewer than 100): the read itself, and no listing of gids.
        assert state.hits("GET", listing) - before == 2
        # A reconcile on its own (no full read just before it) lists the projects.
        workspace.delete("1203000000000007")
        before = state.hits("GET", listing)
        reconcile = sync.run("mkt", mode="reconcile", trigger="cli")
        assert reconcile.status == "succeeded", reconcile.error
        assert reconcile.items_removed == 1
        assert stored_ids(engine) == set(workspace.tasks)
        assert state.hits("GET", listing) - before == 2  # the gid listing of each project


def test_a_task_stored_by_a_webhook_during_a_full_sync_is_not_removed_by_its_reconcile(asana, engine) -> None:
    from mappings.model import BacklogItem
    from service.sync import upsert_items

    workspace, _, url = asana
    late = "1203000000099999"  # created in Asana after the read passed it: the read's gids do not have it

    def webhook_meanwhile(_seen: int) -> None:
        with session_scope(engine) as db:  # what the inbox stores for the task's "added" event
            upsert_items(db, "mkt", [BacklogItem(source="mkt", external_id=late, title="Created mid-read")])

    with syncing(engine, url) as sync:
        full = sync.run("mkt", mode="full", trigger="cli", progress=webhook_meanwhile)
        assert full.status == "succeeded", full.error
        assert late in stored_ids(engine)
        # A reconcile that lists the projects (the task is not in the emulated Asana) removes it.
        reconcile = sync.run("mkt", mode="reconcile", trigger="cli")
        assert reconcile.status == "succeeded", reconcile.error
        assert reconcile.items_removed == 1
        assert stored_ids(engine) == set(workspace.tasks)
