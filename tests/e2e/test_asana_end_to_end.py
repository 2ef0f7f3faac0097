"""End to end on Asana: the webhook is registered through `backlog-sync webhooks register` (Asana's handshake with
the running daemon completes inside that call, one webhook and one secret per project), a user's edit in Asana
comes back as a signed delivery and then as a new score, and the deliveries our own writes cause do not loop.
Bad signatures get 401 and store nothing; heartbeats are accepted."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from openapi_schema_validator import OAS30Validator
from sqlalchemy import func, select
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from connectors.asana_webhooks import sign
from sandbox.asana import DEFAULT_TOKEN, AsanaWorkspace
from sandbox.asana import create_app as create_asana
from sandbox.asana_data import EN_PROJECT, FR_PROJECT
from sandbox.common import ThreadedServer, free_port
from service.api import create_app
from service.cli import app as cli
from service.config import AppConfig, Settings
from service.db import session_scope
from service.outbox import OutboxWorker
from service.tables import InboxRow, ItemRow, WebhookSecretRow
from service.webhooks import asana_secret_key, open_handshake
from tests.e2e.replicas import wait_for
from tests.sandbox.test_asana_sandbox_spec import response_schema

TASK = "1203000000000002"  # "A/B test the pricing page headline", in the English project


@dataclass
class Running:
    workspace: AsanaWorkspace
    engine: Engine
    hook_base: str
    config_path: Path


@pytest.fixture
def running(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, engine: Engine) -> Iterator[Running]:
    monkeypatch.setenv("E2E_ASANA_TOKEN", DEFAULT_TOKEN)
    # `webhooks register` opens the daemon's handshake window in the daemon's database.
    monkeypatch.setenv("DATABASE_URL", engine.url.render_as_string(hide_password=False))
    workspace = AsanaWorkspace(requests_per_minute=1500)
    asana = ThreadedServer(create_asana(workspace))
    workspace.base_url = asana.url
    asana.start()
    daemon_port = free_port()
    hook_base = f"http://127.0.0.1:{daemon_port}/webhooks/asana/mkt"
    source = {"name": "mkt", "kind": "asana", "base_url": asana.url, "token": {"env": "E2E_ASANA_TOKEN"},
              "projects": [EN_PROJECT, FR_PROJECT], "plan": "paid", "schedule": {"interval_seconds": 3600}}
    config_path = tmp_path / "backlog-sync.yaml"
    config_path.write_text(yaml.safe_dump({"webhook_debounce_seconds": 0.2, "sources": [source]}))
    config = AppConfig.model_validate({"webhook_debounce_seconds": 0.2, "sources": [source]})
    settings = Settings(admin_token="an-admin-token-of-the-test-1234", database_url="sqlite://")
    app = create_app(settings=settings, config=config, engine=engine, start_scheduler=True)
    sync = app.state.sync
    assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
    OutboxWorker(engine=engine, sync_service=sync).drain()
    daemon = ThreadedServer(app, port=daemon_port).start()
    yield Running(workspace=workspace, engine=engine, hook_base=hook_base, config_path=config_path)
    daemon.stop()
    asana.stop()


def register(running: Running) -> list[str]:
    result = CliRunner().invoke(cli, ["webhooks", "register", "--source", "mkt", "--url", running.hook_base,
                                      "--config", str(running.config_path)])
    assert result.exit_code == 0, result.output + (result.stderr or "")
    return [line for line in result.stdout.splitlines() if line.startswith("registered asana webhook")]


def test_register_completes_the_handshake_per_project(running: Running) -> None:
    lines = register(running)
    assert len(lines) == 2
    hooks = {hook["resource"]: hook for hook in running.workspace.webhooks}
    assert set(hooks) == {EN_PROJECT, FR_PROJECT}
    assert hooks[EN_PROJECT]["target"] == f"{running.hook_base}/{EN_PROJECT}"
    with session_scope(running.engine) as db:
        for project, hook in hooks.items():
            row = db.get(WebhookSecretRow, asana_secret_key("mkt", project))
            assert row is not None and row.secret == hook["secret"]  # each project its own secret
    assert hooks[EN_PROJECT]["secret"] != hooks[FR_PROJECT]["secret"]


def test_a_handshake_outside_a_registration_is_refused(running: Running) -> None:
    answer = httpx.post(f"{running.hook_base}/{EN_PROJECT}", headers={"X-Hook-Secret": "an-attacker-s-secret"},
                        timeout=10)
    assert answer.status_code == 403
    with session_scope(running.engine) as db:
        assert db.get(WebhookSecretRow, asana_secret_key("mkt", EN_PROJECT)) is None
    register(running)  # the window closes once registration is done
    again = httpx.post(f"{running.hook_base}/{EN_PROJECT}", headers={"X-Hook-Secret": "an-attacker-s-secret"},
                       timeout=10)
    assert again.status_code == 403
    with session_scope(running.engine) as db:
        assert db.get(WebhookSecretRow, asana_secret_key("mkt", EN_PROJECT)).secret != "an-attacker-s-secret"


def test_register_fails_clearly_when_the_daemon_is_not_reachable(running: Running) -> None:
    result = CliRunner().invoke(cli, ["webhooks", "register", "--source", "mkt", "--config",
                                      str(running.config_path), "--url",
                                      f"http://127.0.0.1:{free_port()}/webhooks/asana/mkt"])
    assert result.exit_code == 1
    assert "handshake" in " ".join(result.stderr.split())
    assert running.workspace.webhooks == []


def test_an_edit_in_asana_comes_back_as_a_new_score_once(running: Running) -> None:
    register(running)
    workspace = running.workspace
    score_gid, reach_gid = workspace.field_gid("Marketing score"), workspace.field_gid("Reach")
    task = workspace.tasks[TASK]
    before = task.custom_fields[score_gid]
    assert before is not None
    writes_before = len(workspace.writes)

    workspace.set_field(TASK, "Reach", task.custom_fields[reach_gid] * 10)  # a user's edit: a signed delivery
    assert wait_for(lambda: workspace.tasks[TASK].custom_fields[score_gid] == pytest.approx(before * 10)), \
        workspace.webhook_log
    assert any(entry["status"] == 200 for entry in workspace.webhook_log)

    # Our write came back as deliveries too (Asana sends them for every change); none causes another write.
    workspace.wait_for_webhooks()
    time.sleep(1.0)
    settled = len(workspace.writes)
    workspace.wait_for_webhooks()
    time.sleep(1.0)
    assert len(workspace.writes) == settled
    assert [gid for gid, _ in workspace.writes[writes_before:]].count(TASK) == 1
    with session_scope(running.engine) as db:
        row = db.execute(select(ItemRow).where(ItemRow.external_id == TASK)).scalar_one()
        assert row.score == pytest.approx(before * 10)
        assert row.remote_values["score"] == pytest.approx(before * 10)
        outcomes = [r.outcome or "" for r in db.execute(select(InboxRow)).scalars()]
    # The user's edit refreshed the task; the deliveries of our score and rank writes were recognised as echoes.
    assert any(o.startswith("refreshed 1,") for o in outcomes), outcomes
    echoes = [int(m.group(1)) for o in outcomes if (m := re.search(r"refreshed 0, .* ignored (\d+) echoes", o))]
    assert sum(echoes) >= 1, outcomes


def test_bad_signatures_are_refused_and_heartbeats_accepted(running: Running) -> None:
    register(running)
    url = f"{running.hook_base}/{EN_PROJECT}"
    with session_scope(running.engine) as db:
        secret = db.get(WebhookSecretRow, asana_secret_key("mkt", EN_PROJECT)).secret
        stored = db.scalar(select(func.count()).select_from(InboxRow))
    body = json.dumps({"events": [{"action": "changed", "resource": {"gid": TASK, "resource_type": "task"},
                                   "created_at": "2026-12-01T10:00:00.000Z", "change": {"field": "name"}}]}).encode()
    bad = httpx.post(url, content=body, headers={"X-Hook-Signature": sign("not-the-secret", body)}, timeout=10)
    assert bad.status_code == 401
    unsigned = httpx.post(url, content=body, timeout=10)
    assert unsigned.status_code == 401
    other_project = httpx.post(f"{running.hook_base}/{FR_PROJECT}", content=body,
                               headers={"X-Hook-Signature": sign(secret, body)}, timeout=10)
    assert other_project.status_code == 401  # a project's secret does not sign another project's deliveries
    with session_scope(running.engine) as db:
        assert db.scalar(select(func.count()).select_from(InboxRow)) == stored

    heartbeat = json.dumps({"events": []}).encode()
    beat = httpx.post(url, content=heartbeat, headers={"X-Hook-Signature": sign(secret, heartbeat)}, timeout=10)
    assert beat.status_code == 200
    good = httpx.post(url, content=body, headers={"X-Hook-Signature": sign(secret, body)}, timeout=10)
    assert good.status_code == 200 and good.json() == {"stored": True}


def test_a_non_ascii_signature_is_refused_not_an_error(running: Running) -> None:
    register(running)
    with session_scope(running.engine) as db:
        secret = db.get(WebhookSecretRow, asana_secret_key("mkt", EN_PROJECT)).secret
        stored = db.scalar(select(func.count()).select_from(InboxRow))
    body = json.dumps({"events": [{"action": "changed", "resource": {"gid": TASK, "resource_type": "task"},
                                   "created_at": "2026-12-01T10:00:00.000Z", "change": {"field": "name"}}]}).encode()
    # Raw bytes on the wire: the server reads them as Latin-1, so the header holds non-ASCII characters.
    forged = ("é" + sign(secret, body)[1:] + "✓").encode()
    answer = httpx.post(f"{running.hook_base}/{EN_PROJECT}", content=body, headers={"X-Hook-Signature": forged},
                        timeout=10)
    assert answer.status_code == 401
    with session_scope(running.engine) as db:
        assert db.scalar(select(func.count()).select_from(InboxRow)) == stored


def test_a_deleted_task_leaves_the_backlog(running: Running) -> None:
    register(running)
    assert running.workspace.delete("1203000000000005")

    def gone() -> bool:
        with session_scope(running.engine) as db:
            return db.execute(select(ItemRow).where(ItemRow.external_id == "1203000000000005")).first() is None

    assert wait_for(gone), running.workspace.webhook_log


def test_webhook_creation_answers_as_the_spec_says(running: Running) -> None:
    open_handshake(running.engine, "mkt")  # what `webhooks register` does around the call
    answer = httpx.post(f"{running.workspace.base_url}/webhooks", headers={"Authorization": f"Bearer {DEFAULT_TOKEN}"},
                        json={"data": {"resource": EN_PROJECT, "target": f"{running.hook_base}/{EN_PROJECT}"}},
                        timeout=10)
    assert answer.status_code == 201, answer.text
    errors = list(OAS30Validator(response_schema("/webhooks", "post", 201)).iter_errors(answer.json()))
    assert not errors, [e.message[:200] for e in errors[:3]]


def test_a_callback_for_a_project_not_configured_is_not_found(running: Running) -> None:
    open_handshake(running.engine, "mkt")
    answer = httpx.post(f"{running.hook_base}/1209999999999999", headers={"X-Hook-Secret": "x"}, timeout=10)
    assert answer.status_code == 404
    with session_scope(running.engine) as db:
        assert db.get(WebhookSecretRow, asana_secret_key("mkt", "1209999999999999")) is None
