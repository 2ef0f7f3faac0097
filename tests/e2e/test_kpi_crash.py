"""kill -9 in the middle of a GA4 backfill, with a real `backlog-sync kpi --run` process, on SQLite and
PostgreSQL: every stored chunk came with its coverage mark, and the restarted run reads only what is missing."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from sqlalchemy import func, select

from sandbox.common import ThreadedServer
from sandbox.ga4 import GA4Property
from sandbox.ga4 import create_app as create_ga4
from service.db import make_engine, session_scope, upgrade
from service.tables import KpiCoverageRow, KpiJobRow, KpiProgressRow, KpiSnapshotRow
from tests.conftest import drop_postgres_database, fresh_postgres_url, require_postgres
from tests.e2e.replicas import ROOT

pytestmark = pytest.mark.slow
BATCH_ROUTE = "/v1beta/properties/{property_id}:batchRunReports"


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'kpi-crash.db'}"
        upgrade(url)
        yield url
        return
    require_postgres()
    url = fresh_postgres_url()
    yield url
    drop_postgres_database(url)


def run_kpi(config: Path, database_url: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_FORMAT": "text"}
    return subprocess.Popen(  # noqa: S603 - our own CLI
        [sys.executable, "-m", "service.cli", "kpi", "-c", str(config), "--run", "--today", "2026-12-01"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def test_kill_during_backfill_then_resume(tmp_path: Path, database_url: str) -> None:
    ga4 = GA4Property(today=date(2026, 12, 1))
    app = create_ga4(ga4)
    app.state.sandbox.inject(route=BATCH_ROUTE, method="POST", delay=0.6, times=-1)  # a slow GA4
    server = ThreadedServer(app).start()
    config = tmp_path / "config.yaml"
    config.write_text(yaml.safe_dump({
        "lease_seconds": 2,  # the killed run's lease lapses after this; until then nobody else runs the job
        "ga4": {"property_id": "123456789", "endpoint": server.url, "anonymous": True, "backfill_chunk_days": 20},
        "objectives": [{
            "key": "email-leads", "name": "Email leads", "owner": "mops", "metric": "eventCount",
            "dimension_filter": {"eventName": "generate_lead", "sessionDefaultChannelGroup": "Email"},
            "baseline": "previous_year", "target": "+40%", "start": "2026-01-01", "end": "2026-12-31"}],
    }))
    engine = make_engine(database_url)
    try:
        # 699 days in chunks of 20 = 35 chunks, 7 calls of 5; kill it once some, not all, are stored.
        process = run_kpi(config, database_url)
        deadline = time.monotonic() + 60
        stored = 0
        while time.monotonic() < deadline and stored < 10:
            with session_scope(engine) as db:
                stored = db.scalar(select(KpiCoverageRow.chunks_read)) or 0
            time.sleep(0.05)
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        assert 10 <= stored < 35, stored

        with session_scope(engine) as db:
            coverage = db.execute(select(KpiCoverageRow)).scalar_one()
            snapshots = db.scalar(select(func.count()).select_from(KpiSnapshotRow))
            assert db.scalar(select(func.count()).select_from(KpiProgressRow)) == 0
        assert coverage.fetched_from == date(2025, 1, 1) and coverage.fetched_to is not None
        # Chunks and their coverage mark commit together: exactly the covered days are stored.
        assert snapshots == (coverage.fetched_to - coverage.fetched_from).days + 1 == coverage.chunks_read * 20
        resume_from = (coverage.fetched_to + timedelta(days=1)).isoformat()

        app.state.sandbox.faults.clear()
        seen = len(ga4.requests)
        with session_scope(engine) as db:  # the dead run still holds the lease until it lapses
            lease = db.execute(select(KpiJobRow)).scalar_one()
        assert lease.lease_owner is not None and lease.lease_expires_at is not None
        expires = lease.lease_expires_at if lease.lease_expires_at.tzinfo else lease.lease_expires_at.replace(
            tzinfo=UTC)
        time.sleep(max(0.0, (expires - datetime.now(UTC)).total_seconds()) + 0.2)
        restarted = run_kpi(config, database_url)
        output, _ = restarted.communicate(timeout=120)
        assert restarted.returncode == 0, output.decode()
        starts = sorted(r["startDate"] for request in ga4.requests[seen:]
                        for report in request["body"]["requests"] for r in report["dateRanges"])
        assert starts[0] == resume_from  # nothing stored is read again
        assert len(starts) == 35 - coverage.chunks_read
        with session_scope(engine) as db:
            assert db.scalar(select(func.count()).select_from(KpiSnapshotRow)) == 699
            assert db.execute(select(KpiProgressRow.milestone_status)).scalar_one() == "on_track"
    finally:
        engine.dispose()
        server.stop()
