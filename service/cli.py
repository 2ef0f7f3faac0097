"""The `backlog-sync` command: serve, sync, backlog, kpi, check-config, db, sandbox and demo."""

from __future__ import annotations

import os
import sys
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from service.config import AppConfig, ConfigError, Settings, configured_secrets, load_config

app = typer.Typer(help="Syncs marketing backlogs (Jira, Trello, Asana) with priority scores and GA4 KPIs.",
                  no_args_is_help=True, pretty_exceptions_enable=False)
db_app = typer.Typer(help="Database migrations.", no_args_is_help=True)
app.add_typer(db_app, name="db")
webhooks_app = typer.Typer(help="Webhook set-up.", no_args_is_help=True)
app.add_typer(webhooks_app, name="webhooks")

console = Console()
err = Console(stderr=True)

ConfigOption = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="Config file (default: $BACKLOG_SYNC_CONFIG or ./backlog-sync.yaml)."),
]


def _settings() -> Settings:
    return Settings()


def _config(path: Path | None, *, check_secrets: bool = True) -> AppConfig:
    path = path or _settings().backlog_sync_config
    try:
        return load_config(path, check_secrets=check_secrets)
    except ConfigError as exc:
        err.print(f"[red]The configuration has {len(exc.problems)} problem(s):[/red]")
        for problem in exc.problems:
            err.print(f"  {problem}", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None


def _engine(settings: Settings, *, require_migrated: bool = True) -> Any:
    from service.db import NotMigratedError, check_migrated, make_engine

    engine = make_engine(settings.database_url)
    if require_migrated:
        try:
            check_migrated(engine)
        except NotMigratedError as exc:
            err.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(3) from None
    return engine


def _setup_logs(settings: Settings, config: AppConfig | None, fmt: str | None = None) -> None:
    from service.logs import register_secrets, setup_logging

    setup_logging(settings.log_level, fmt or settings.log_format)
    if config is not None:
        register_secrets(configured_secrets(config))
    if settings.admin_token:
        register_secrets([settings.admin_token])


@app.command("check-config")
def check_config(config: ConfigOption = None) -> None:
    """Validates the config file: every problem is named with its file and key path."""
    loaded = _config(config)
    console.print(f"[green]OK[/green]: {len(loaded.sources)} source(s), {len(loaded.objectives)} objective(s).")


@db_app.command("upgrade")
def db_upgrade(revision: str = "head") -> None:
    """Applies the database migrations (SQLite file by default, PostgreSQL by DATABASE_URL)."""
    from service.db import redact_url, upgrade

    settings = _settings()
    upgrade(settings.database_url, revision)
    console.print(f"Database {redact_url(settings.database_url)} is at migration {revision}.", highlight=False)


@db_app.command("current")
def db_current() -> None:
    """Prints the database's migration and the newest one."""
    from service.db import current_revision, head_revision

    engine = _engine(_settings(), require_migrated=False)
    console.print(f"current: {current_revision(engine)}  head: {head_revision()}")


@webhooks_app.command("url")
def webhook_url(
    source: Annotated[str, typer.Option(help="The source the webhook is for.")],
    base_url: Annotated[str, typer.Option(help="The daemon's public URL, e.g. https://backlog-sync.example.com")],
    config: ConfigOption = None,
) -> None:
    """Prints the URL to register in the tool for a source's webhook (with its path token if it has no secret)."""
    from service.webhooks import jira_path_token

    loaded = _config(config, check_secrets=False)
    found = loaded.source(source)
    if found is None:
        err.print(f"[red]No source named {source!r}; configured: {', '.join(s.name for s in loaded.sources)}[/red]")
        raise typer.Exit(2)
    url = f"{base_url.rstrip('/')}/webhooks/{found.kind}/{found.name}"
    if found.kind == "jira" and found.webhook_secret is None:
        try:
            admin_token = _settings().checked_admin_token()
        except ConfigError as exc:
            err.print(f"[red]{exc}[/red]", highlight=False)
            raise typer.Exit(2) from None
        url += "/" + jira_path_token(admin_token, found.name)
        console.print(url, highlight=False, soft_wrap=True)
        err.print("No webhook_secret is configured: the URL carries an unguessable token instead; keep it secret.")
        return
    console.print(url, highlight=False, soft_wrap=True)
    if found.kind == "jira":
        err.print("Set the same secret in Jira's webhook settings; deliveries are verified with X-Hub-Signature.")


@webhooks_app.command("register")
def webhook_register(
    source: Annotated[str, typer.Option(help="The source to register a webhook for.")],
    url: Annotated[str | None, typer.Option(
        help="The public callback URL the tool will call, exactly as it will sign it (Trello: default and only "
             "allowed value, the source's webhook_url).")] = None,
    config: ConfigOption = None,
) -> None:
    """Creates the tool's webhook for a source through the tool's API (Trello, Asana); the daemon must be reachable
    at the URL, because the tool checks it (Trello: HEAD; Asana: a handshake) before it creates the webhook."""
    from connectors.base import ConnectorError, RegistersWebhooks, RetryPolicy
    from service.registry import tool_for

    loaded = _config(config)
    found = loaded.source(source)
    if found is None:
        err.print(f"[red]No source named {source!r}; configured: {', '.join(s.name for s in loaded.sources)}[/red]")
        raise typer.Exit(2)
    if found.kind == "trello":
        url = _trello_callback_url(found, url)
    if not url:
        err.print(f"[red]Give the public callback URL with --url for source {found.name!r}.[/red]")
        raise typer.Exit(2)
    connector = tool_for(found.kind).build(found, RetryPolicy())
    try:
        if not isinstance(connector, RegistersWebhooks):
            err.print(f"[red]{found.kind} webhooks are registered in {found.kind} itself: "
                      f"run `backlog-sync webhooks url --source {found.name} --base-url ...` "
                      "for the URL to enter there.[/red]")
            raise typer.Exit(2)
        # Asana's handshake reaches the daemon during the call: the daemon accepts it only while this runs.
        engine = _engine(_settings()) if found.kind == "asana" else None
        try:
            from service.webhooks import handshake_window

            with handshake_window(engine, found.name) if engine is not None else nullcontext():
                ids = connector.register_webhook(url)
        except ConnectorError as exc:
            err.print(f"[red]{found.kind} refused the webhook for {found.name}: {exc}[/red]", highlight=False)
            raise typer.Exit(1) from None
        finally:
            if engine is not None:
                engine.dispose()
    finally:
        connector.close()
    for webhook_id in ids:
        console.print(f"registered {found.kind} webhook {webhook_id} -> {url}", highlight=False, soft_wrap=True)


def _trello_callback_url(found: Any, url: str | None) -> str:
    """Trello signs each delivery with the app secret over body + callback URL, and the daemon checks it against
    webhook_secret and webhook_url: a webhook registered without the one or on another URL is refused forever."""
    if found.webhook_secret is None:
        err.print(f"[red]Source {found.name!r} has no webhook_secret: set sources[].webhook_secret to the Trello app "
                  "secret before registering, or the daemon refuses every delivery as unsigned.[/red]", soft_wrap=True)
        raise typer.Exit(2)
    if url is None:
        url = found.webhook_url
    if url is None:
        err.print(f"[red]Give --url, or set sources[].webhook_url of {found.name!r} to the public callback "
                  "URL.[/red]", soft_wrap=True)
        raise typer.Exit(2)
    if found.webhook_url is not None and url != found.webhook_url:
        err.print(f"[red]--url {url} differs from the webhook_url of {found.name!r} ({found.webhook_url}): Trello "
                  "signs with the URL it is given and the daemon verifies against webhook_url, so every delivery "
                  "would be refused; omit --url or set webhook_url to it.[/red]", highlight=False, soft_wrap=True)
        raise typer.Exit(2)
    return url


@app.command()
def serve(
    config: ConfigOption = None,
    host: str = typer.Option("0.0.0.0", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
) -> None:
    """Runs the daemon: scheduled syncs, the outbox worker, webhooks and the admin API."""
    import uvicorn

    from service.api import create_app

    settings = _settings()
    loaded = _config(config)
    _setup_logs(settings, loaded)
    engine = _engine(settings)
    try:
        web = create_app(settings=settings, config=loaded, engine=engine, start_scheduler=settings.run_scheduler)
    except ConfigError as exc:
        err.print(f"[red]{exc}[/red]", highlight=False)
        raise typer.Exit(2) from None
    uvicorn.run(web, host=host, port=port, log_config=None, access_log=False)


@app.command()
def sync(
    config: ConfigOption = None,
    source: Annotated[str | None, typer.Option(help="Only this source (default: all).")] = None,
    full: Annotated[bool, typer.Option("--full", help="Read everything instead of changes since the cursor.")] = False,
    write: Annotated[bool, typer.Option(help="Send the planned writes now.")] = True,
) -> None:
    """Syncs sources now, with a progress bar, then sends the planned writes."""
    from service.outbox import OutboxWorker
    from service.sync import SourceBusy, SyncService

    settings = _settings()
    loaded = _config(config)
    _setup_logs(settings, loaded, fmt="text")
    engine = _engine(settings)
    names = [source] if source else [s.name for s in loaded.sources]
    if source and loaded.source(source) is None:
        err.print(f"[red]No source named {source!r}; configured: {', '.join(s.name for s in loaded.sources)}[/red]")
        raise typer.Exit(2)
    service = SyncService(engine=engine, config=loaded)
    failed = False
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed} items"),
                  TimeElapsedColumn(), console=err, transient=False) as progress:
        for name in names:
            task = progress.add_task(f"sync {name}", total=None)
            try:
                result = service.run(name, mode="full" if full else "incremental", trigger="cli",
                                     progress=lambda n, t=task: progress.update(t, completed=n))
            except SourceBusy as exc:
                failed = True
                err.print(f"[yellow]{exc}; try again when it has finished[/yellow]", highlight=False)
                continue
            progress.update(task, total=result.items_seen, completed=result.items_seen)
            if result.status != "succeeded":
                failed = True
                err.print(f"[red]sync of {name} failed:[/red] {result.error}", highlight=False)
            else:
                console.print(f"{name}: {result.items_seen} seen, {result.items_changed} changed, "
                              f"{result.items_removed} removed, {result.writes_planned} writes planned")
    if write:
        drained = OutboxWorker(engine=engine, sync_service=service).drain()
        console.print(f"writes: {drained.sent} sent, {drained.failed} failed, {drained.deferred} deferred")
        for line in drained.errors[:10]:
            err.print(f"  {line}", highlight=False, markup=False)
    service.close()
    if failed:
        raise typer.Exit(1)


@app.command()
def backlog(
    source: Annotated[str | None, typer.Option(help="Only this source.")] = None,
    limit: Annotated[int, typer.Option(help="How many rows.")] = 30,
) -> None:
    """Prints the ranked backlog."""
    settings = _settings()
    engine = _engine(settings)
    print_backlog(engine, source=source, limit=limit)


def print_backlog(engine: Any, *, source: str | None = None, limit: int = 30, out: Console | None = None) -> None:
    from sqlalchemy import select
    from sqlmodel import Session

    from service.tables import ItemRow

    with Session(engine) as db:
        query = select(ItemRow)
        if source:
            query = query.where(ItemRow.source == source)
        rows = list(db.execute(query.order_by(ItemRow.source, ItemRow.rank.is_(None), ItemRow.rank,
                                              ItemRow.external_id).limit(limit)).scalars())
    table = Table(title="Ranked marketing backlog", show_lines=False)
    for column in ("source", "rank", "key", "title", "type", "status", "method", "score", "quadrant", "problems"):
        table.add_column(column, overflow="fold")
    for row in rows:
        problems = list(row.problems or []) + list(row.score_problems or [])
        table.add_row(
            row.source, "" if row.rank is None else str(row.rank), row.key or row.external_id, row.title[:60],
            row.item_type, row.status, row.method or "", "" if row.score is None else f"{row.score:.2f}",
            row.quadrant or "", "; ".join(p.get("reason", "") for p in problems[:2])[:70],
        )
    # Piped output has no width of its own; do not squeeze the table into 80 columns.
    out = out or console
    (out if out.is_terminal or out.record else Console(width=200)).print(table)


@app.command()
def kpi(
    config: ConfigOption = None,
    run: Annotated[bool, typer.Option("--run", help="Read GA4 and recompute the objectives first.")] = False,
    today: Annotated[str | None, typer.Option(help="With --run: the day the run takes as today (YYYY-MM-DD).")] = None,
    write: Annotated[bool, typer.Option(help="With --run: send the planned KPI writes now.")] = True,
    reread_from: Annotated[str | None, typer.Option(
        help="With --run: read GA4 again from this day (YYYY-MM-DD), for corrections older than the lookback.")
    ] = None,
) -> None:
    """Prints the KPI objectives: current milestone, actual vs expected, status and projection."""
    from datetime import date

    settings = _settings()
    loaded = _config(config)
    _setup_logs(settings, loaded, fmt="text")
    engine = _engine(settings)
    if run:
        if loaded.ga4 is None:
            err.print("[red]The config has no 'ga4' section: there is nothing to read objectives from.[/red]")
            raise typer.Exit(2)
        from service.kpi.job import KpiJob, KpiUnavailable
        from service.outbox import OutboxWorker
        from service.sync import SyncService

        job = KpiJob(engine=engine, config=loaded)
        if reread_from:
            job.reread_from(date.fromisoformat(reread_from))
        try:
            result = job.run(today=date.fromisoformat(today) if today else None, trigger="cli")
        except KpiUnavailable as exc:
            err.print(f"[yellow]{exc}[/yellow]", highlight=False)
            raise typer.Exit(1) from None
        finally:
            job.close()
        console.print(f"KPI run {result.status}: {result.calls} GA4 calls, {result.chunks_read} chunks, "
                      f"{result.snapshots_changed} values changed, {result.writes_planned} writes planned")
        if result.error:
            err.print(f"[red]{result.error}[/red]", highlight=False, markup=False)
        if write and result.writes_planned:
            service = SyncService(engine=engine, config=loaded)
            drained = OutboxWorker(engine=engine, sync_service=service).drain()
            service.close()
            console.print(f"writes: {drained.sent} sent, {drained.failed} failed, {drained.deferred} deferred")
        if result.status == "failed":
            print_objectives(engine, loaded)
            raise typer.Exit(1)
    print_objectives(engine, loaded)


def print_objectives(engine: Any, config: AppConfig, out: Console | None = None) -> None:
    from sqlmodel import Session

    from service.kpi.views import objective_summaries
    from service.tables import KpiJobRow

    with Session(engine) as db:
        summaries = objective_summaries(db, config)
        job = db.get(KpiJobRow, "kpi")
    table = Table(title="KPI objectives", show_lines=False)
    for column in ("objective", "owner", "as of", "milestone", "actual", "expected", "status", "window to date",
                   "status ", "target", "projection"):
        table.add_column(column, overflow="fold")

    def number(value: float | None) -> str:
        return "" if value is None else f"{value:,.0f}" if abs(value) >= 100 else f"{value:,.3f}"

    for row in summaries:
        current = row["current_milestone"] or {}
        table.add_row(
            f"{row['key']}: {row['name']}"[:60], row["owner"], str(row["as_of"] or "not computed yet"),
            f"{current.get('label', '')} ({current['uplift'] * 100:+.1f}%)" if current else "",
            number(current.get("actual")), number(current.get("expected_to_date")), current.get("status", ""),
            f"{number(row['actual'])} / {number(row['expected_to_date'])}" if row["as_of"] else "",
            row["status"] or "", number(row["expected_total"]), number(row["projection"]))
    out = out or console
    (out if out.is_terminal or out.record else Console(width=200)).print(table)
    for row in summaries:
        if row["problem"]:
            out.print(f"not computed: {row['problem']}", markup=False, highlight=False)
    if job is not None:
        last = job.last_success_at.isoformat(timespec="seconds") if job.last_success_at else "never"
        out.print(f"KPI job: {job.state}, last success {last}" + (f"; {job.last_error}" if job.last_error else ""),
                  markup=False, highlight=False)


@app.command("sandbox")
def sandbox_cmd(
    tool: Annotated[str, typer.Option(help="jira, trello, asana or ga4.")] = "jira",
    port: Annotated[int, typer.Option(help="Port on 127.0.0.1.")] = 8081,
) -> None:
    """Runs one emulated tool on 127.0.0.1 (for trying the service without a real account)."""
    import importlib

    import uvicorn

    module = importlib.import_module(f"sandbox.{tool}")
    uvicorn.run(module.create_app(), host="127.0.0.1", port=port, log_level="warning")


@app.command()
def demo(
    port: Annotated[int, typer.Option(help="Port of the daemon.")] = 8000,
    workdir: Annotated[Path, typer.Option(help="Where the demo keeps its SQLite file and config.")] = Path(".demo"),
    keep_running: Annotated[bool, typer.Option(help="Keep the daemon running until Ctrl-C.")] = True,
) -> None:
    """Starts the sandbox tools and the daemon on a fresh SQLite file, syncs, and shows the ranked backlog."""
    from service.demo import run_demo

    sys.exit(run_demo(port=port, workdir=workdir, keep_running=keep_running, console=console))


def main() -> None:  # pragma: no cover - console entry point
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
