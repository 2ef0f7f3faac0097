"""What an operator watches: /metrics in Prometheus format after real syncs, webhooks and writes, JSON logs
carrying the sync or request id, and a failing source logged when it starts failing and when it recovers."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from connectors.base import RetryPolicy
from connectors.jira_webhooks import sign
from sandbox.common import ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite
from sandbox.jira import create_app as create_jira
from service.api import create_app
from service.config import AppConfig, Settings
from service.logs import JsonFormatter
from service.outbox import OutboxWorker

ADMIN = "observability-admin-token-123456"
SECRET = "observability-webhook-secret"


@pytest.fixture
def stack(engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, JiraSite, object]]:
    monkeypatch.setenv("OBS_JIRA_TOKEN", DEFAULT_TOKEN)
    monkeypatch.setenv("OBS_JIRA_SECRET", SECRET)
    site = JiraSite()
    jira_app = create_jira(site)
    jira = ThreadedServer(jira_app)
    site.base_url = jira.url
    jira.start()
    config = AppConfig.model_validate({"webhook_debounce_seconds": 0, "sources": [{
        "name": "mkt", "kind": "jira", "base_url": jira.url, "jql": "project = MKT",
        "auth": {"email": DEFAULT_EMAIL, "token": {"env": "OBS_JIRA_TOKEN"}},
        "webhook_secret": {"env": "OBS_JIRA_SECRET"},
    }]})
    app = create_app(settings=Settings(admin_token=ADMIN), config=config, engine=engine, start_scheduler=False)
    app.state.sync.policy = RetryPolicy(max_attempts=3, base_delay=0.01, max_delay=0.2)
    with TestClient(app) as client:
        yield client, site, jira_app.state.sandbox
    jira.stop()


def samples(client: TestClient) -> dict[str, list[tuple[dict[str, str], float]]]:
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            found.setdefault(sample.name, []).append((sample.labels, sample.value))
    return found


def value(found, name: str, **labels: str) -> float:
    return sum(v for sample_labels, v in found.get(name, []) if labels.items() <= sample_labels.items())


def test_metrics_cover_syncs_calls_outbox_and_webhooks(stack) -> None:
    client, site, sandbox = stack
    sandbox.inject(route="/rest/api/3/search/jql", method="POST", status=429, headers={"Retry-After": "0"})
    sync = client.app.state.sync
    assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"

    found = samples(client)
    assert value(found, "backlog_sync_sync_duration_seconds_count", source="mkt", status="succeeded") == 1
    assert value(found, "backlog_sync_sync_items_total", source="mkt") == 42
    assert value(found, "backlog_sync_vendor_api_calls_total", vendor="jira", status="200") >= 5
    assert value(found, "backlog_sync_vendor_429_total", vendor="jira") == 1
    pending = value(found, "backlog_sync_outbox_pending", source="mkt")
    assert pending > 0
    assert any(labels.get("source") == "mkt"  # present, not just a sum over nothing
               for labels, _ in found.get("backlog_sync_outbox_oldest_pending_seconds", []))
    assert value(found, "backlog_sync_outbox_oldest_pending_seconds", source="mkt") >= 0

    OutboxWorker(engine=sync.engine, sync_service=sync).drain()
    found = samples(client)
    assert value(found, "backlog_sync_outbox_pending", source="mkt") == 0

    issue = site.find("MKT-4")
    body = json.dumps({"webhookEvent": "jira:issue_updated", "timestamp": 1, "issue": {"id": str(issue.id)},
                       "changelog": {"id": "1", "items": [{"fieldId": "customfield_10050", "toString": "9"}]}})
    headers = {"X-Hub-Signature": sign(SECRET, body.encode()), "Content-Type": "application/json"}
    assert client.post("/webhooks/jira/mkt", content=body, headers=headers).status_code == 200
    assert client.post("/webhooks/jira/mkt", content=body, headers=headers).status_code == 200  # a duplicate
    found = samples(client)
    assert value(found, "backlog_sync_webhooks_total", source="mkt") == 2
    assert value(found, "backlog_sync_inbox_pending", source="mkt") == 1
    inbox = client.app.state.daemon.inbox
    time.sleep(0.05)
    assert inbox.process_due() == 1
    found = samples(client)
    assert value(found, "backlog_sync_webhook_processing_seconds_count", source="mkt") == 1
    assert value(found, "backlog_sync_inbox_pending", source="mkt") == 0


def test_failures_are_logged_when_they_start_and_when_they_recover(stack, caplog) -> None:
    client, _, sandbox = stack
    sync = client.app.state.sync
    sandbox.inject(route="/rest/api/3/search/jql", method="POST", status=503, times=-1)
    caplog.set_level(logging.DEBUG, logger="backlog_sync")
    for _ in range(3):
        assert sync.run("mkt", mode="full", trigger="cli").status == "failed"
    sandbox.clear_faults()
    assert sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR and r.name == "backlog_sync.sync"]
    assert len(errors) == 1 and "503" in errors[0].getMessage()
    recovered = [r for r in caplog.records if getattr(r, "event", None) == "recovered"]
    assert len(recovered) == 1 and "3 failed runs" in recovered[0].getMessage()


def test_json_logs_carry_the_sync_id_and_the_request_id(stack, caplog) -> None:
    client, _, _ = stack
    caplog.set_level(logging.INFO, logger="backlog_sync")
    assert client.app.state.sync.run("mkt", mode="full", trigger="cli").status == "succeeded"
    formatter = JsonFormatter()
    finished = [r for r in caplog.records if r.getMessage().startswith("sync of mkt (full) finished")]
    assert finished
    entry = json.loads(formatter.format(finished[0]))
    assert entry["level"] == "info" and entry["source"] == "mkt" and isinstance(entry["run_id"], int)
    assert entry["id"].startswith(f"sync-mkt-{entry['run_id']}-")

    response = client.get("/health", headers={"X-Request-ID": "probe-42"})
    assert response.headers["X-Request-ID"] == "probe-42"
    generated = client.get("/health").headers["X-Request-ID"]
    assert generated.startswith("req-") and len(generated) > 8
    assert client.get("/health", headers={"X-Request-ID": "bad id\nwith newline"}).headers[
        "X-Request-ID"].startswith("req-")
