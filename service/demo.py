"""`backlog-sync demo`: the emulated Jira and the daemon on a fresh SQLite file, a full sync, the ranked backlog.

Everything runs on 127.0.0.1 and in this process: the emulated Jira (sandbox/jira.py) on a free port, then
the daemon (scheduler, outbox worker, webhook receiver, admin API) on `port`. The emulated Jira sends signed
webhooks to the daemon when an issue changes, so an edit made through its /_sandbox/edit route shows up as
a new score within a second or two.
"""

from __future__ import annotations

import os
import secrets
import time
from pathlib import Path
from typing import Any

import yaml
from rich.console import Console

DEMO_SOURCE = "marketing-jira"


def demo_config(jira_url: str, daemon_url: str) -> dict[str, Any]:
    return {
        "sources": [{
            "name": DEMO_SOURCE,
            "kind": "jira",
            "base_url": jira_url,
            "auth": {"deployment": "cloud", "email": "marketing-ops@example.com", "token": {"env": "DEMO_JIRA_TOKEN"}},
            "jql": "project = MKT",
            "scoring": {"method": "rice"},
            "schedule": {"interval_seconds": 60, "reconcile_every": 10},
            "write_back": {"score_field": "Marketing score", "rank_field": "Marketing rank"},
            "webhook_secret": {"env": "DEMO_JIRA_WEBHOOK_SECRET"},
            "webhook_url": f"{daemon_url}/webhooks/jira/{DEMO_SOURCE}",
        }],
    }


def run_demo(*, port: int, workdir: Path, keep_running: bool, console: Console) -> int:
    """Runs the demo; returns the process exit code."""
    import uvicorn

    from sandbox.common import ThreadedServer, free_port
    from sandbox.jira import DEFAULT_TOKEN, JiraSite
    from sandbox.jira import create_app as create_jira
    from service.api import create_app
    from service.cli import print_backlog
    from service.config import Settings, load_config
    from service.db import make_engine, upgrade
    from service.logs import setup_logging
    from service.outbox import OutboxWorker
    from service.sync import SyncService

    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "backlog-sync.db"
    for stale in (database, workdir / "backlog-sync.db-wal", workdir / "backlog-sync.db-shm"):
        stale.unlink(missing_ok=True)

    site = JiraSite()
    jira = ThreadedServer(create_jira(site), port=free_port())
    site.base_url = jira.url
    jira.start()
    daemon_url = f"http://127.0.0.1:{port}"

    webhook_secret = secrets.token_urlsafe(24)
    admin_token = secrets.token_urlsafe(24)
    os.environ.update({
        "DEMO_JIRA_TOKEN": DEFAULT_TOKEN,
        "DEMO_JIRA_WEBHOOK_SECRET": webhook_secret,
        "DATABASE_URL": f"sqlite:///{database}",
        "ADMIN_TOKEN": admin_token,
        "LOG_FORMAT": "text",
    })
    config_path = workdir / "backlog-sync.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(jira.url, daemon_url), sort_keys=False))
    console.print(f"emulated Jira: {jira.url} ({len(site.issues)} issues); config: {config_path}")

    settings = Settings()
    config = load_config(config_path)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    setup_logging("WARNING", "text")

    sync = SyncService(engine=engine, config=config)
    started = time.monotonic()
    result = sync.run(DEMO_SOURCE, mode="full", trigger="cli")
    if result.status != "succeeded":
        console.print(f"[red]the demo sync failed:[/red] {result.error}", highlight=False)
        jira.stop()
        return 1
    drained = OutboxWorker(engine=engine, sync_service=sync).drain()
    sync.close()
    console.print(f"full sync: {result.items_seen} issues in {time.monotonic() - started:.1f}s; "
                  f"{drained.sent} field writes sent to Jira ({drained.failed} failed)")
    print_backlog(engine, limit=50, out=console)
    if not keep_running:
        engine.dispose()
        jira.stop()
        return 0 if drained.failed == 0 else 1

    site.register_webhook(f"{daemon_url}/webhooks/jira/{DEMO_SOURCE}", secret=webhook_secret)
    setup_logging("INFO", "text")
    web = create_app(settings=settings, config=config, engine=engine, start_scheduler=True)
    console.print(
        f"\n[bold]The daemon is running[/bold] (Ctrl-C stops it):\n"
        f"  admin API docs   {daemon_url}/docs   (Authorization: Bearer {admin_token})\n"
        f"  ranked items     curl -H 'Authorization: Bearer {admin_token}' {daemon_url}/api/items\n"
        f"  metrics          {daemon_url}/metrics\n"
        f"  change an issue  curl -X POST {jira.url}/_sandbox/edit -H 'Content-Type: application/json' "
        "-d '{\"issue\": \"MKT-2\", \"field\": \"Reach\", \"value\": 90000}'\n"
        f"                   (the emulated Jira sends a signed webhook; the new score is written back)\n",
        highlight=False,
    )
    try:
        uvicorn.run(web, host="127.0.0.1", port=port, log_config=None, access_log=False)
    finally:
        jira.stop()
        engine.dispose()
    return 0

