"""Three real `backlog-sync serve` processes on one PostgreSQL database: 1,000 webhook deliveries spread
across them, one replica killed with SIGKILL half-way. Every acknowledged delivery is processed, every
score is written exactly once, and each scheduled sync runs once per tick."""

from __future__ import annotations

import itertools
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
from sqlalchemy import func, select

from sandbox.common import ThreadedServer
from sandbox.jira import JiraSite, create_app
from service.db import make_engine, session_scope
from service.tables import InboxRow, ItemRow, OutboxRow, SyncRun
from tests.conftest import drop_postgres_database, fresh_postgres_url, require_postgres
from tests.e2e.replicas import Cluster, deliver, wait_until, webhook_body, write_config

SCORE = "customfield_10070"
REACH = "customfield_10050"
pytestmark = [pytest.mark.postgres, pytest.mark.slow]


@pytest.fixture
def postgres_url():
    require_postgres()
    url = fresh_postgres_url()
    yield url
    drop_postgres_database(url)


def test_three_replicas_process_every_event_and_write_once(tmp_path: Path, postgres_url: str) -> None:
    site = JiraSite()
    site.generate(160)  # 42 seeded + 160 generated issues in MKT
    jira = ThreadedServer(create_app(site))
    site.base_url = jira.url
    jira.start()
    engine = make_engine(postgres_url)
    from service.db import upgrade

    upgrade(postgres_url)
    cluster = Cluster(write_config(tmp_path / "config.yaml", jira.url), postgres_url, tmp_path)
    try:
        replicas = cluster.start(3)
        in_scope = sum(1 for issue in site.issues.values() if issue.project == "MKT")

        # The first scheduled tick: one sync for the three replicas, then every score written once.
        def synced() -> bool:
            with session_scope(engine) as db:
                items = db.scalar(select(func.count()).select_from(ItemRow)) or 0
                waiting = db.scalar(select(func.count()).select_from(OutboxRow)
                                    .where(OutboxRow.status.in_(("pending", "sending")))) or 0
            return items == in_scope and waiting == 0 and len(site.edits) > 0

        wait_until(synced, 60, "the first scheduled sync and its writes")
        first_writes = len(site.edits)

        # Users change Reach on 100 issues; Jira's deliveries (10 per change) arrive at any replica.
        changed = [issue for issue in site.issues.values() if issue.project == "MKT"
                   and isinstance(issue.fields.get(REACH), int | float) and issue.fields.get(SCORE)][:100]
        assert len(changed) == 100
        deliveries = []
        for issue in changed:
            before = issue.fields[REACH]
            site.set_field(str(issue.id), "Reach", before * 2, notify=False)
            for copy in range(10):
                body = webhook_body(site, issue, field_id=REACH, name="Reach", before=before, after=before * 2)
                deliveries.append((f"{issue.key}-{copy}", body))
        assert len(deliveries) == 1000

        targets = itertools.cycle(replicas)
        acknowledged: list[str] = []

        def send(delivery: tuple[str, bytes], url: str) -> None:
            delivery_id, body = delivery
            status = deliver(url, body, delivery_id)
            for alive in [r for r in replicas if r.process.poll() is None]:
                if status == 200:
                    break
                status = deliver(alive.url, body, delivery_id)  # Jira retries a delivery that failed
            assert status == 200, f"{delivery_id} was never acknowledged"
            acknowledged.append(delivery_id)

        with ThreadPoolExecutor(max_workers=12) as pool:
            list(pool.map(send, deliveries[:500], [next(targets).url for _ in range(500)]))
            replicas[2].kill()  # mid-work: it may hold claimed inbox rows and unsent writes
            survivors = itertools.cycle(replicas[:2])
            list(pool.map(send, deliveries[500:], [next(survivors).url for _ in range(500)]))
        assert len(acknowledged) == 1000

        def settled() -> bool:
            with session_scope(engine) as db:
                open_inbox = db.scalar(select(func.count()).select_from(InboxRow)
                                       .where(InboxRow.status.in_(("pending", "processing")))) or 0
                waiting = db.scalar(select(func.count()).select_from(OutboxRow)
                                    .where(OutboxRow.status.in_(("pending", "sending")))) or 0
            return open_inbox == 0 and waiting == 0

        wait_until(settled, 90, "every delivery processed and every write sent")

        with session_scope(engine) as db:
            inbox = list(db.execute(select(InboxRow)).scalars())
            scores = {row.external_id: row.score for row in db.execute(select(ItemRow)).scalars()}
            runs = list(db.execute(select(SyncRun).where(SyncRun.trigger == "schedule")
                                   .order_by(SyncRun.started_at)).scalars())
        # Every acknowledged delivery is stored once and processed.
        assert len(inbox) == 1000
        assert {row.status for row in inbox} == {"done"}, {row.outcome for row in inbox if row.status != "done"}
        assert len({row.delivery_id for row in inbox}) == 1000
        # Every changed score reached Jira, and each was written exactly once.
        with session_scope(engine) as db:
            outbox = [(r.external_id, r.field, r.value, r.status, r.last_error, r.attempts)
                      for r in db.execute(select(OutboxRow)).scalars()]
        for issue in changed:
            mine = [row for row in outbox if row[0] == str(issue.id)]
            assert site.find(str(issue.id)).fields[SCORE] == pytest.approx(scores[str(issue.id)]), mine
        later = site.edits[first_writes:]
        per_issue = Counter(edit["issue"] for edit in later if SCORE in edit["fields"])
        extra = sorted(set(per_issue) - {issue.key for issue in changed})
        assert not extra, ([e for e in later if e["issue"] in extra[:3]],
                           [e for e in site.edits[:first_writes] if e["issue"] in extra[:3]])
        assert set(per_issue) == {issue.key for issue in changed}
        assert set(per_issue.values()) == {1}, per_issue.most_common(5)
        # Scheduled syncs: one per tick whatever the number of replicas, never two at once.
        for earlier, later_run in itertools.pairwise(runs):
            assert earlier.finished_at is not None and earlier.finished_at <= later_run.started_at
            assert (later_run.started_at - earlier.started_at).total_seconds() >= 10 * 0.8 - 0.5
    finally:
        cluster.stop_all()
        engine.dispose()
        jira.stop()
