"""Helpers to run real `backlog-sync serve` processes against the emulated Jira, for replica and crash tests."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from connectors.jira_webhooks import sign
from sandbox.common import free_port
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, Issue, JiraSite

ROOT = Path(__file__).resolve().parents[2]
ADMIN_TOKEN = "replica-test-admin-token-0123456789"
SECRET = "replica-test-webhook-secret"
SOURCE = "mkt"


def write_config(path: Path, jira_url: str, **overrides: Any) -> Path:
    source: dict[str, Any] = {
        "name": SOURCE, "kind": "jira", "base_url": jira_url, "jql": "project = MKT",
        "auth": {"email": DEFAULT_EMAIL, "token": {"env": "REPLICA_JIRA_TOKEN"}},
        "schedule": {"interval_seconds": 10, "reconcile_every": 1000},
        "write_back": {"score_field": "Marketing score", "rank_field": None},
        "webhook_secret": {"env": "REPLICA_JIRA_SECRET"},
    }
    source.update(overrides.pop("source", {}))
    config = {"sources": [source], "webhook_debounce_seconds": 0.2, "outbox_interval_seconds": 1,
              "claim_seconds": 10, **overrides}
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


@dataclass
class Replica:
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def kill(self) -> None:
        """kill -9: no shutdown handler runs."""
        if self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


@dataclass
class Cluster:
    config_path: Path
    database_url: str
    workdir: Path
    replicas: list[Replica] = field(default_factory=list)

    def env(self) -> dict[str, str]:
        return {**os.environ, "DATABASE_URL": self.database_url, "ADMIN_TOKEN": ADMIN_TOKEN,
                "BACKLOG_SYNC_CONFIG": str(self.config_path), "REPLICA_JIRA_TOKEN": DEFAULT_TOKEN,
                "REPLICA_JIRA_SECRET": SECRET, "LOG_FORMAT": "json", "LOG_LEVEL": "INFO",
                "PYTHONUNBUFFERED": "1"}

    def start(self, count: int = 1) -> list[Replica]:
        started = []
        for _ in range(count):
            port = free_port()
            log_path = self.workdir / f"replica-{port}.log"
            process = subprocess.Popen(  # noqa: S603 - our own CLI
                [sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port", str(port)],
                cwd=ROOT, env=self.env(), stdout=log_path.open("wb"), stderr=subprocess.STDOUT,
            )
            replica = Replica(port, process, log_path)
            self.replicas.append(replica)
            started.append(replica)
        for replica in started:
            wait_ready(replica)
        return started

    def stop_all(self) -> None:
        for replica in self.replicas:
            replica.stop()

    def logs(self) -> str:
        return "\n".join(r.log_path.read_text(errors="replace") for r in self.replicas if r.log_path.exists())


def wait_ready(replica: Replica, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if replica.process.poll() is not None:
            raise RuntimeError(f"replica on {replica.port} exited: {replica.log_path.read_text()[-3000:]}")
        try:
            if httpx.get(f"{replica.url}/ready", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"replica on {replica.port} did not become ready: {replica.log_path.read_text()[-3000:]}")


def webhook_body(site: JiraSite, issue: Issue, *, field_id: str, name: str, before: Any, after: Any) -> bytes:
    """A jira:issue_updated body as the emulated Jira sends it (v2 shape, with a changelog)."""
    with site.lock:
        rendered = site.render(issue, None)
    rendered["fields"]["description"] = None
    return json.dumps({
        "timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
        "issue_event_type_name": "issue_generic", "issue": rendered,
        "changelog": {"id": uuid.uuid4().hex[:10], "items": [
            {"field": name, "fieldtype": "custom", "fieldId": field_id, "from": None, "fromString": str(before),
             "to": None, "toString": str(after)}]},
    }).encode()


def deliver(url: str, body: bytes, delivery_id: str) -> int:
    """Posts one signed delivery; returns the status, or 0 when the replica could not be reached."""
    headers = {"Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body),
               "X-Atlassian-Webhook-Identifier": delivery_id}
    try:
        return httpx.post(f"{url}/webhooks/jira/{SOURCE}", content=body, headers=headers, timeout=10).status_code
    except httpx.HTTPError:
        return 0


def wait_for(condition: Any, timeout: float = 15.0) -> bool:
    """Polls `condition` until it holds (True) or `timeout` seconds pass (False), for callers that say why."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def wait_until(condition: Any, timeout: float, message: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out after {timeout}s: {message}")
