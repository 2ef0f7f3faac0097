"""kill -9 in the middle of a full sync, of the write-back and of webhook intake, with real processes, on
SQLite and PostgreSQL: after a restart nothing acknowledged is lost, the sync resumes from its last
committed cursor, no field is written twice and the database is consistent."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox.common import SandboxState, ThreadedServer
from sandbox.jira import JiraSite, create_app
from service.db import make_engine, session_scope, upgrade
from service.tables import InboxRow, ItemRow, OutboxRow, SourceRow, SyncRun
from tests.conftest import drop_postgres_database, fresh_postgres_url, require_postgres
from tests.e2e.replicas import ROOT, Cluster, deliver, wait_until, webhook_body, write_config

SCORE = "customfield_10070"
REACH = "customfield_10050"
pytestmark = pytest.mark.slow


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'crash.db'}"
        upgrade(url)
        yield url
        return
    require_postgres()
    url = fresh_postgres_url()
    yield url
    drop_postgres_database(url)


@pytest.fixture
def jira() -> Iterator[tuple[JiraSite, ThreadedServer, SandboxState]]:
    site = JiraSite()
    site.generate(800)
    app = create_app(site)
    server = ThreadedServer(app)
    site.base_url = server.url
    server.start()
    yield site, server, app.state.sandbox
    server.stop()


FAST = {"requests_per_second": 500}


def cli(cluster: Cluster, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "service.cli", *args], cwd=ROOT, env=cluster.env(),  # noqa: S603
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)


def count(engine, model, *where) -> int:
    with session_scope(engine) as db:
        return db.scalar(select(func.count()).select_from(model).where(*where)) or 0


def kill(process: subprocess.Popen[bytes]) -> None:
    os.kill(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def test_kill_during_full_sync_and_write_back_then_resume(tmp_path: Path, database_url: str, jira) -> None:
    site, server, sandbox = jira
    # A slow Jira: its pages of 100 are stored about two a batch (one page 0.3 s, service.sync.BATCH_SECONDS
    # 0.5 s), so the kill comes between two batches of the full sync.
    sandbox.inject(route="/rest/api/3/search/jql", method="POST", delay=0.3, times=-1)
    in_scope = sum(1 for issue in site.issues.values() if issue.project == "MKT")
    cluster = Cluster(write_config(tmp_path / "config.yaml", server.url, lease_seconds=3, claim_seconds=3,
                                   source=FAST), database_url, tmp_path)
    engine = make_engine(database_url)
    try:
        # 1. kill -9 while pages are being stored.
        sync = cli(cluster, "sync", "--full")
        wait_until(lambda: count(engine, ItemRow) >= 300, 60, "the first pages of the full sync")
        kill(sync)
        stored = count(engine, ItemRow)
        assert 0 < stored < in_scope
        with session_scope(engine) as db:
            cursor = db.get(SourceRow, "mkt").cursor
            newest_stored = db.scalar(select(func.max(ItemRow.updated_at)))
        # The cursor moved with the pages it covers: it is exactly the newest stored issue, never ahead of it.
        assert cursor is not None and newest_stored is not None
        assert datetime.fromisoformat(cursor) == newest_stored.replace(tzinfo=UTC)
        assert len(site.edits) == 0  # nothing was written before the sync finished

        # 2. Restart: the incremental run resumes from the cursor, then the write-back starts; kill it mid-way.
        time.sleep(3.5)  # the killed run's lease expires
        searches_before = sandbox.hits("POST", "/rest/api/3/search/jql")
        sync = cli(cluster, "sync")
        wait_until(lambda: len(site.edits) >= 200, 120, "part of the write-back")
        kill(sync)
        assert count(engine, ItemRow) == in_scope
        searches = sandbox.hits("POST", "/rest/api/3/search/jql") - searches_before
        full_pages = -(-in_scope // 100)
        assert searches < full_pages + 2, "the resumed run re-read pages the first run had committed"
        with session_scope(engine) as db:
            statuses = [run.status for run in db.execute(select(SyncRun).order_by(SyncRun.id)).scalars()]
        # The run killed in step 1 was closed by this one, which finished its sync before the write-back began.
        assert statuses == ["failed", "succeeded"]

        # 3. Restart again: the writes left over are sent, none twice.
        time.sleep(3.5)  # the killed process's lease and claims expire
        finish = cli(cluster, "sync")
        output = finish.communicate(timeout=180)[0].decode()
        assert finish.returncode == 0, output
        assert count(engine, OutboxRow, OutboxRow.status.in_(("pending", "sending"))) == 0
        written = Counter(edit["issue"] for edit in site.edits if SCORE in edit["fields"])
        assert set(written.values()) == {1}, written.most_common(3)
        with session_scope(engine) as db:
            scored = db.scalar(select(func.count()).select_from(ItemRow).where(ItemRow.score.is_not(None)))
            runs = list(db.execute(select(SyncRun).order_by(SyncRun.id)).scalars())
        assert len(written) == scored
        assert [run.status for run in runs] == ["failed", "succeeded", "succeeded"]
        assert "interrupted" in (runs[0].error or "")
    finally:
        engine.dispose()


def test_kill_during_webhook_intake_loses_no_acknowledged_event(tmp_path: Path, database_url: str, jira) -> None:
    site, server, _ = jira
    cluster = Cluster(write_config(tmp_path / "config.yaml", server.url, lease_seconds=3, claim_seconds=3,
                                   source={**FAST, "schedule": {"interval_seconds": 3600}}), database_url, tmp_path)
    engine = make_engine(database_url)
    try:
        finished = cli(cluster, "sync", "--full")
        assert finished.wait(timeout=180) == 0, finished.stdout.read().decode()
        (replica,) = cluster.start(1)

        issues = [issue for issue in site.issues.values() if issue.project == "MKT"
                  and isinstance(issue.fields.get(REACH), int | float) and issue.fields.get(SCORE)][:300]
        acknowledged: list[str] = []
        stop = threading.Event()

        def send(batch: list) -> None:
            for issue in batch:
                if stop.is_set():
                    return
                before = issue.fields[REACH]
                site.set_field(str(issue.id), "Reach", before + 1000, notify=False)
                body = webhook_body(site, issue, field_id=REACH, name="Reach", before=before, after=before + 1000)
                if deliver(replica.url, body, f"crash-{issue.key}") == 200:
                    acknowledged.append(issue.key)

        threads = [threading.Thread(target=send, args=(issues[i::6],)) for i in range(6)]
        for thread in threads:
            thread.start()
        wait_until(lambda: len(acknowledged) >= 60, 60, "the first deliveries")
        replica.kill()
        stop.set()
        for thread in threads:
            thread.join(timeout=30)
        assert acknowledged

        # Every acknowledged delivery was stored before its 200 went out.
        with session_scope(engine) as db:
            stored = {row.delivery_id for row in db.execute(select(InboxRow)).scalars()}
        assert {f"crash-{key}" for key in acknowledged} <= stored

        # After a restart, all of them are processed and their new scores written, each once.
        cluster.start(1)
        wait_until(lambda: count(engine, InboxRow, InboxRow.status.in_(("pending", "processing"))) == 0
                   and count(engine, OutboxRow, OutboxRow.status.in_(("pending", "sending"))) == 0,
                   90, "the inbox and the outbox after the restart")
        assert count(engine, InboxRow, InboxRow.status != "done") == 0
        with session_scope(engine) as db:
            scores = {row.external_id: row.score for row in db.execute(select(ItemRow)).scalars()}
        for key in acknowledged:
            issue = site.find(key)
            assert issue.fields[SCORE] == pytest.approx(scores[str(issue.id)])
        later = [edit for edit in site.edits if SCORE in edit["fields"]]
        per_value = Counter((edit["issue"], edit["fields"][SCORE]) for edit in later)
        assert set(per_value.values()) == {1}, per_value.most_common(3)
    finally:
        cluster.stop_all()
        engine.dispose()
