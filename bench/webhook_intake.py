"""Webhook benchmark: signed Jira deliveries persisted per second by one `backlog-sync serve` process, and the
latency from a webhook to the new score written in Jira (p50/p95/p99), on SQLite and on PostgreSQL.

    .venv/bin/python bench/webhook_intake.py                       # SQLite file, then PostgreSQL if reachable
    .venv/bin/python bench/webhook_intake.py --events 5000 --latency-samples 200 --databases sqlite

The emulated Jira runs in this process; the daemon runs as its own process, exactly as deployed.
Targets (issue): >= 500 events/s per process on both databases, webhook -> written field p95 under 1 s.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from _shared import percentile  # noqa: E402  (bench/_shared.py, beside this script)

from connectors.jira_webhooks import sign  # noqa: E402
from sandbox.common import ThreadedServer  # noqa: E402
from sandbox.jira import JiraSite, create_app  # noqa: E402
from service.db import make_engine, session_scope, upgrade  # noqa: E402
from tests.e2e.replicas import SECRET, Cluster, write_config  # noqa: E402

SCORE = "customfield_10070"
REACH = "customfield_10050"
POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"


def fresh_database(kind: str, workdir: Path) -> str | None:
    if kind == "sqlite":
        url = f"sqlite:///{workdir / 'bench.db'}"
        upgrade(url)
        return url
    from sqlalchemy import create_engine, text

    name = f"bench_webhooks_{uuid.uuid4().hex[:8]}"
    try:
        admin = create_engine(POSTGRES.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
        admin.dispose()
    except Exception as exc:  # noqa: BLE001 - the benchmark reports and skips
        print(f"PostgreSQL unavailable, skipped: {exc}")  # noqa: T201
        return None
    url = POSTGRES.rsplit("/", 1)[0] + f"/{name}"
    upgrade(url)
    return url


def body_for(issue_id: int, n: int) -> bytes:
    return json.dumps({
        "timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
        "issue": {"id": str(issue_id), "key": f"MKT-{issue_id}", "fields": {"summary": "bench"}},
        "changelog": {"id": str(n), "items": [{"field": "labels", "fieldId": "labels", "toString": f"x{n}"}]},
    }).encode()


def _send_slice(args: tuple[str, list[bytes], int]) -> tuple[int, float, float]:
    """One client process: sends its bodies over `threads` keep-alive connections; (acknowledged, start, end)."""
    url, bodies, threads = args
    from concurrent.futures import ThreadPoolExecutor

    def send_part(part: list[bytes]) -> int:
        ok = 0
        with httpx.Client(timeout=30) as client:
            for body in part:
                response = client.post(f"{url}/webhooks/jira/mkt", content=body, headers={
                    "Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body)})
                ok += response.status_code == 200
        return ok

    started = time.time()
    with ThreadPoolExecutor(threads) as pool:
        acknowledged = sum(pool.map(send_part, [bodies[i::threads] for i in range(threads)]))
    return acknowledged, started, time.time()


def intake(url: str, events: int, concurrency: int, issue_ids: list[int]) -> tuple[float, int]:
    """Sends `events` distinct signed deliveries from 4 client processes; returns (seconds, acknowledged)."""
    import multiprocessing

    bodies = [body_for(issue_ids[n % len(issue_ids)], n) for n in range(events)]
    processes = 4
    threads = max(1, concurrency // processes)
    with multiprocessing.get_context("spawn").Pool(processes) as pool:
        results = pool.map(_send_slice, [(url, bodies[i::processes], threads) for i in range(processes)])
    first = min(started for _, started, _ in results)
    last = max(ended for _, _, ended in results)
    return last - first, sum(acknowledged for acknowledged, _, _ in results)


def latency(url: str, site: JiraSite, samples: int) -> list[float]:
    """A user's edit (Reach x2) arrives as a signed webhook; time until Jira holds the new score."""
    results = []
    candidates = [issue for issue in site.issues.values() if issue.project == "MKT"
                  and isinstance(issue.fields.get(REACH), int | float) and issue.fields.get(SCORE)]
    with httpx.Client(timeout=10) as client:
        for n in range(samples):
            issue = candidates[n % len(candidates)]
            before_score = issue.fields[SCORE]
            reach = issue.fields[REACH]
            site.set_field(str(issue.id), "Reach", reach * 2, notify=False)
            body = json.dumps({
                "timestamp": int(time.time() * 1000), "webhookEvent": "jira:issue_updated",
                "issue": {"id": str(issue.id), "key": issue.key},
                "changelog": {"id": uuid.uuid4().hex, "items": [
                    {"field": "Reach", "fieldId": REACH, "fromString": str(reach), "toString": str(reach * 2)}]},
            }).encode()
            started = time.perf_counter()
            response = client.post(f"{url}/webhooks/jira/mkt", content=body, headers={
                "Content-Type": "application/json", "X-Hub-Signature": sign(SECRET, body)})
            assert response.status_code == 200, response.text
            deadline = started + 30
            while site.find(str(issue.id)).fields[SCORE] == before_score and time.perf_counter() < deadline:
                time.sleep(0.002)
            results.append(time.perf_counter() - started)
    return results


def run(kind: str, args: argparse.Namespace) -> dict[str, object] | None:
    workdir = Path(tempfile.mkdtemp(prefix=f"bench-webhooks-{kind}-"))
    database = fresh_database(kind, workdir)
    if database is None:
        return None
    site = JiraSite()
    jira = ThreadedServer(create_app(site))
    site.base_url = jira.url
    jira.start()
    config = write_config(workdir / "config.yaml", jira.url, webhook_debounce_seconds=args.debounce,
                          source={"requests_per_second": 1000, "schedule": {"interval_seconds": 3600}})
    cluster = Cluster(config, database, workdir)
    try:
        from typer.testing import CliRunner

        from service.cli import app as cli_app  # noqa: F401 - fail early if the CLI is broken

        runner = CliRunner()
        synced = runner.invoke(cli_app, ["sync", "--full"], env=cluster.env())
        assert synced.exit_code == 0, synced.output
        (replica,) = cluster.start(1)
        ids = [issue.id for issue in site.issues.values() if issue.project == "MKT"]
        intake(replica.url, 200, args.concurrency, ids)  # warm-up
        seconds, acknowledged = intake(replica.url, args.events, args.concurrency, ids)
        engine = make_engine(database)
        from sqlalchemy import func, select

        from service.tables import InboxRow

        with session_scope(engine) as db:
            stored = db.scalar(select(func.count()).select_from(InboxRow)) or 0
        engine.dispose()
        time.sleep(2)  # let the worker drain the intake burst before measuring latency
        lat = latency(replica.url, site, args.latency_samples)
        return {
            "database": kind, "events": args.events, "acknowledged": acknowledged, "stored": stored,
            "events_per_s": round(acknowledged / seconds, 1), "concurrency": args.concurrency,
            "latency_p50_ms": round(percentile(lat, 0.50) * 1000, 1),
            "latency_p95_ms": round(percentile(lat, 0.95) * 1000, 1),
            "latency_p99_ms": round(percentile(lat, 0.99) * 1000, 1),
            "latency_mean_ms": round(statistics.mean(lat) * 1000, 1), "latency_samples": len(lat),
            "debounce_s": args.debounce,
        }
    finally:
        cluster.stop_all()
        jira.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--events", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=16, help="connections, over 4 client processes")
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--debounce", type=float, default=0.25, help="webhook_debounce_seconds of the daemon")
    parser.add_argument("--databases", default="sqlite,postgresql")
    args = parser.parse_args()
    results = [r for kind in args.databases.split(",") if (r := run(kind.strip(), args)) is not None]
    print(f"{'database':<11}{'events/s':>10}{'stored':>8}{'p50 ms':>9}{'p95 ms':>9}{'p99 ms':>9}")  # noqa: T201
    for r in results:
        print(f"{r['database']:<11}{r['events_per_s']:>10}{r['stored']:>8}{r['latency_p50_ms']:>9}"  # noqa: T201
              f"{r['latency_p95_ms']:>9}{r['latency_p99_ms']:>9}")
    print(json.dumps(results))  # noqa: T201


if __name__ == "__main__":
    main()
