"""`backlog-sync demo`: the emulated Jira, Trello, Asana and GA4 with the daemon on a fresh SQLite file.

Everything runs on 127.0.0.1 and in this process. Each emulated tool (sandbox/) is served on a free port; the
demo syncs the three marketing backlogs, writes scores and ranks back, reads the seeded GA4 property for two
SMART objectives (the seed article's +40 % email leads a year, split into quarters) and writes each linked
item's KPI result, then prints the ranked backlog and the objectives. Kept running, the daemon (scheduler,
outbox, webhook receiver, admin API) listens on `port`; every tool sends signed webhooks to it, so an edit made
through a tool's /_sandbox/edit route comes back as a new score within a second or two.
"""

from __future__ import annotations

import os
import secrets
import signal
import threading
import time
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import yaml
from rich.console import Console

JIRA_SOURCE = "marketing-jira"
TRELLO_SOURCE = "marketing-trello"
ASANA_SOURCE = "marketing-asana"
SOURCES = (JIRA_SOURCE, TRELLO_SOURCE, ASANA_SOURCE)
EMAIL_LEADS = {"eventName": "generate_lead", "sessionDefaultChannelGroup": "Email"}


@dataclass
class Tools:
    """The emulated tools of one demo run and their URLs."""

    jira_site: Any
    trello_site: Any
    asana_space: Any
    ga4_property: Any
    servers: dict[str, Any] = field(default_factory=dict)

    def url(self, tool: str) -> str:
        return str(self.servers[tool].url)

    def stop(self) -> None:
        for server in self.servers.values():
            server.stop()


def demo_config(tools: Tools, daemon_url: str) -> dict[str, Any]:
    """The demo's config file: three trackers, the GA4 property, and two objectives."""
    from sandbox.asana_data import EN_PROJECT, FR_PROJECT

    schedule = {"interval_seconds": 60, "reconcile_every": 10}
    return {
        "sources": [
            {
                "name": JIRA_SOURCE, "kind": "jira", "base_url": tools.url("jira"),
                "auth": {"deployment": "cloud", "email": "marketing-ops@example.com",
                         "token": {"env": "DEMO_JIRA_TOKEN"}},
                "jql": "project = MKT", "scoring": {"method": "rice"}, "schedule": schedule,
                "write_back": {"score_field": "Marketing score", "rank_field": "Marketing rank",
                               "kpi_field": "KPI result", "kpi_comments": True},
                "webhook_secret": {"env": "DEMO_JIRA_WEBHOOK_SECRET"},
                "webhook_url": f"{daemon_url}/webhooks/jira/{JIRA_SOURCE}",
            },
            {
                "name": TRELLO_SOURCE, "kind": "trello", "base_url": tools.url("trello"),
                "api_key": {"env": "DEMO_TRELLO_KEY"}, "token": {"env": "DEMO_TRELLO_TOKEN"},
                "boards": [board.short_link for board in tools.trello_site.boards.values()],
                "scoring": {"method": "rice"}, "schedule": schedule,
                "write_back": {"score_field": "Marketing score", "rank_field": "Marketing rank", "kpi_comments": True},
                "webhook_secret": {"env": "DEMO_TRELLO_SECRET"},
                "webhook_url": f"{daemon_url}/webhooks/trello/{TRELLO_SOURCE}",
            },
            {
                "name": ASANA_SOURCE, "kind": "asana", "base_url": tools.url("asana"),
                "token": {"env": "DEMO_ASANA_TOKEN"}, "projects": [EN_PROJECT, FR_PROJECT], "plan": "paid",
                "scoring": {"method": "rice"}, "schedule": schedule, "language": "fr",
                "write_back": {"score_field": "Marketing score", "rank_field": "Marketing rank", "kpi_comments": True},
            },
        ],
        "ga4": {"property_id": tools.ga4_property.property_id, "endpoint": tools.url("ga4"), "anonymous": True},
        "objectives": [
            {
                "key": "email-leads", "name": "Email leads +40% year over year",
                "owner": "marketing-ops@example.com", "metric": "eventCount", "dimension_filter": EMAIL_LEADS,
                "baseline": "previous_year", "target": "+40%", "start": "2026-01-01", "end": "2026-12-31",
                "milestones": "quarterly", "split": "linear",
            },
            {
                "key": "organic-sessions", "name": "Organic sessions +20% year over year",
                "aliases": ["organic-traffic"], "owner": "seo@example.com", "metric": "sessions",
                "dimension_filter": {"sessionDefaultChannelGroup": "Organic Search"},
                "baseline": "previous_year", "target": "+20%", "start": "2026-01-01", "end": "2026-12-31",
                "milestones": "quarterly",
            },
        ],
    }


def ga4_today() -> date:
    """The emulated property's today: the real date in the property's zone, inside the seeded years."""
    from sandbox.ga4 import TIME_ZONE
    from sandbox.ga4_data import FIRST_DAY, LAST_DAY

    today = datetime.now(ZoneInfo(TIME_ZONE)).date()
    return today if FIRST_DAY < today <= LAST_DAY else date(2026, 12, 1)


def start_tools() -> Tools:
    """Starts the four emulated tools, each on a free port of 127.0.0.1."""
    from sandbox.asana import AsanaWorkspace
    from sandbox.asana import create_app as create_asana
    from sandbox.common import ThreadedServer, free_port
    from sandbox.ga4 import GA4Property
    from sandbox.ga4 import create_app as create_ga4
    from sandbox.jira import JiraSite
    from sandbox.jira import create_app as create_jira
    from sandbox.trello import TrelloSite
    from sandbox.trello import create_app as create_trello

    tools = Tools(jira_site=JiraSite(), trello_site=TrelloSite(), asana_space=AsanaWorkspace(requests_per_minute=1500),
                  ga4_property=GA4Property(today=ga4_today()))
    apps = {"jira": create_jira(tools.jira_site), "trello": create_trello(tools.trello_site),
            "asana": create_asana(tools.asana_space), "ga4": create_ga4(tools.ga4_property)}
    for tool, web in apps.items():
        tools.servers[tool] = ThreadedServer(web, port=free_port())
    tools.jira_site.base_url = tools.url("jira")
    tools.asana_space.base_url = tools.url("asana")
    for server in tools.servers.values():
        server.start()
    return tools


def run_demo(*, port: int, workdir: Path, keep_running: bool, console: Console) -> int:
    """Runs the demo; returns the process exit code."""
    from sandbox.asana import DEFAULT_TOKEN as ASANA_TOKEN
    from sandbox.jira import DEFAULT_TOKEN as JIRA_TOKEN
    from sandbox.trello import DEFAULT_KEY, DEFAULT_SECRET
    from sandbox.trello import DEFAULT_TOKEN as TRELLO_TOKEN
    from service.cli import print_backlog, print_objectives
    from service.config import Settings, load_config
    from service.db import make_engine, upgrade
    from service.kpi.job import KpiJob
    from service.logs import setup_logging
    from service.outbox import OutboxWorker
    from service.sync import SyncService

    workdir.mkdir(parents=True, exist_ok=True)
    database = workdir / "backlog-sync.db"
    for stale in (database, workdir / "backlog-sync.db-wal", workdir / "backlog-sync.db-shm"):
        stale.unlink(missing_ok=True)

    tools = start_tools()
    daemon_url = f"http://127.0.0.1:{port}"
    jira_webhook_secret = secrets.token_urlsafe(24)
    admin_token = secrets.token_urlsafe(24)
    os.environ.update({
        "DEMO_JIRA_TOKEN": JIRA_TOKEN,
        "DEMO_JIRA_WEBHOOK_SECRET": jira_webhook_secret,
        "DEMO_TRELLO_KEY": DEFAULT_KEY,
        "DEMO_TRELLO_TOKEN": TRELLO_TOKEN,
        "DEMO_TRELLO_SECRET": DEFAULT_SECRET,
        "DEMO_ASANA_TOKEN": ASANA_TOKEN,
        "DATABASE_URL": f"sqlite:///{database}",
        "ADMIN_TOKEN": admin_token,
        "LOG_FORMAT": "text",
    })
    config_path = workdir / "backlog-sync.yaml"
    config_path.write_text(yaml.safe_dump(demo_config(tools, daemon_url), sort_keys=False, allow_unicode=True))
    console.print(f"emulated tools: Jira {tools.url('jira')}, Trello {tools.url('trello')}, "
                  f"Asana {tools.url('asana')}, GA4 {tools.url('ga4')}; config: {config_path}", highlight=False)

    settings = Settings()
    config = load_config(config_path)
    upgrade(settings.database_url)
    engine = make_engine(settings.database_url)
    setup_logging("WARNING", "text")

    failed = False
    sync = SyncService(engine=engine, config=config)
    for name in SOURCES:
        started = time.monotonic()
        result = sync.run(name, mode="full", trigger="cli")
        if result.status != "succeeded":
            console.print(f"[red]the demo sync of {name} failed:[/red] {result.error}", highlight=False)
            failed = True
            continue
        console.print(f"full sync of {name}: {result.items_seen} items in {time.monotonic() - started:.1f}s",
                      highlight=False)
    drained = OutboxWorker(engine=engine, sync_service=sync).drain()
    console.print(f"{drained.sent} score and rank writes sent to the tools ({drained.failed} failed)")
    failed = failed or drained.failed > 0

    job = KpiJob(engine=engine, config=config)
    kpi = job.run(today=tools.ga4_property.today, trigger="cli")
    job.close()
    kpi_writes = OutboxWorker(engine=engine, sync_service=sync).drain()
    sync.close()
    console.print(f"KPI run {kpi.status} as of {tools.ga4_property.today}: {kpi.calls} GA4 calls, "
                  f"{len(kpi.objectives_computed)} objectives computed; {kpi_writes.sent} KPI results written "
                  f"to linked items ({kpi_writes.failed} failed)", highlight=False)
    failed = failed or kpi.status != "succeeded" or kpi_writes.failed > 0

    for name in SOURCES:
        print_backlog(engine, source=name, limit=12, out=console)
    print_objectives(engine, config, out=console)
    if not keep_running:
        engine.dispose()
        tools.stop()
        return 1 if failed else 0
    return _serve(tools=tools, config=config, settings=settings, engine=engine, port=port,
                  jira_webhook_secret=jira_webhook_secret, admin_token=admin_token, console=console)


def _serve(*, tools: Tools, config: Any, settings: Any, engine: Any, port: int, jira_webhook_secret: str,
           admin_token: str, console: Console) -> int:
    """Runs the daemon until Ctrl-C, with every tool's webhooks pointed at it."""
    from sandbox.common import ThreadedServer
    from service.api import create_app
    from service.logs import setup_logging
    from service.webhooks import handshake_window

    daemon_url = f"http://127.0.0.1:{port}"
    setup_logging("INFO", "text")
    web = create_app(settings=settings, config=config, engine=engine, start_scheduler=True)
    daemon = ThreadedServer(web, port=port).start()
    try:
        tools.jira_site.register_webhook(f"{daemon_url}/webhooks/jira/{JIRA_SOURCE}", secret=jira_webhook_secret)
        sync = web.state.sync
        # Trello checks the callback with HEAD and Asana completes a handshake with it: the daemon is up first.
        sync.connector(TRELLO_SOURCE).register_webhook(f"{daemon_url}/webhooks/trello/{TRELLO_SOURCE}")
        with handshake_window(engine, ASANA_SOURCE):
            sync.connector(ASANA_SOURCE).register_webhook(f"{daemon_url}/webhooks/asana/{ASANA_SOURCE}")
        trello_card = next(card.id for card in tools.trello_site.cards.values() if "TikTok" in card.name)
        asana_task = next(task.gid for task in tools.asana_space.tasks.values() if task.name.startswith("A/B test"))
        console.print(
            f"\n[bold]The daemon is running[/bold] (Ctrl-C stops it):\n"
            f"  admin API docs   {daemon_url}/docs   (Authorization: Bearer {admin_token})\n"
            f"  ranked items     curl -H 'Authorization: Bearer {admin_token}' {daemon_url}/api/items\n"
            f"  objectives       curl -H 'Authorization: Bearer {admin_token}' {daemon_url}/api/objectives\n"
            f"  metrics          {daemon_url}/metrics\n"
            f"  change an item   (each tool sends a signed webhook; the new score is written back to it)\n"
            f"    Jira    curl -X POST {tools.url('jira')}/_sandbox/edit -H 'Content-Type: application/json' "
            "-d '{\"issue\": \"MKT-2\", \"field\": \"Reach\", \"value\": 90000}'\n"
            f"    Trello  curl -X POST {tools.url('trello')}/_sandbox/edit -H 'Content-Type: application/json' "
            f"-d '{{\"card\": \"{trello_card}\", \"field\": \"Reach\", \"value\": 90000}}'\n"
            f"    Asana   curl -X POST {tools.url('asana')}/_sandbox/edit -H 'Content-Type: application/json' "
            f"-d '{{\"task\": \"{asana_task}\", \"field\": \"Reach\", \"value\": 90000}}'\n",
            highlight=False, soft_wrap=True,
        )
        stop = threading.Event()
        previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(0.5):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            signal.signal(signal.SIGTERM, previous)
    finally:
        daemon.stop()
        tools.stop()
        engine.dispose()
    return 0
