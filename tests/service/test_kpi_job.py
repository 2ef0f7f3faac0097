"""The KPI job against the emulated GA4 property (real client over HTTP) and the emulated Jira: the seed's
worked example, backfill resumed after quota exhaustion, late corrections, write-back and derived reach.

Expectations come from the sandbox's documented ground truth, written out here by hand: the 2025 email-lead
series is 40 + (6, 4, 2, 0, -2, -6, -4)[weekday], 2026 is that value times 1.12 / 1.05 / 1.28 / 1.46 by quarter
(rounded), and GA4 shows yesterday at 90 % (today at 60 %) until the days are processed."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from connectors.base import RetryPolicy
from connectors.ga4 import GA4Connector
from sandbox.common import ThreadedServer
from sandbox.ga4 import GA4Property
from sandbox.ga4 import create_app as create_ga4
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN, JiraSite
from sandbox.jira import create_app as create_jira
from service.api import create_app
from service.cli import app as cli
from service.config import AppConfig, Settings
from service.db import session_scope
from service.kpi.job import KpiJob, KpiUnavailable
from service.outbox import OutboxWorker, claim
from service.registry import tool_for
from service.scheduler import Daemon
from service.sync import SyncService
from service.tables import (
    ItemRow,
    KpiCoverageRow,
    KpiItemResultRow,
    KpiJobRow,
    KpiProgressRow,
    KpiReachRow,
    KpiSnapshotRow,
    OutboxRow,
)

TODAY = date(2026, 12, 1)
EMAIL_LEADS = {"eventName": "generate_lead", "sessionDefaultChannelGroup": "Email"}
WEEKLY = (6, 4, 2, 0, -2, -6, -4)
GROWTH = {1: 1.12, 2: 1.05, 3: 1.28, 4: 1.46}
ADMIN_TOKEN = "admin-token-of-the-kpi-tests-0123456789"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
KPI_FIELD = "customfield_10072"  # the emulated Jira's "KPI result" (a paragraph field)


def leads_2025(day: date) -> int:
    return 40 + WEEKLY[day.weekday()]


def leads_2026(day: date) -> int:
    return round(leads_2025(day.replace(year=2025)) * GROWTH[(day.month - 1) // 3 + 1])


def shown(day: date, today: date = TODAY) -> int:
    """What GA4 shows for a 2026 day: yesterday at 90 % of its final value."""
    final = leads_2026(day)
    return round(final * 0.9) if (today - day).days == 1 else final


def days(start: date, end: date) -> list[date]:
    return [start + timedelta(n) for n in range((end - start).days + 1)]


@dataclass
class World:
    ga4: GA4Property
    ga4_url: str
    jira: JiraSite
    jira_url: str
    engine: Engine

    def config(self, *, language: str = "en", threshold: float = 0.05, reach: dict[str, Any] | None = None,
               ga4: dict[str, Any] | None = None) -> AppConfig:
        return AppConfig.model_validate({
            "sources": [{
                "name": "mkt", "kind": "jira", "base_url": self.jira_url, "jql": "project = MKT",
                "auth": {"email": DEFAULT_EMAIL, "token": {"env": "KPI_TEST_JIRA_TOKEN"}}, "language": language,
                "write_back": {"kpi_field": "KPI result", "kpi_comments": True, "kpi_change_threshold": threshold},
                **({"reach_from_ga4": reach} if reach is not None else {}),
            }],
            "ga4": {"property_id": "123456789", "endpoint": self.ga4_url, "anonymous": True, **(ga4 or {})},
            "objectives": [{
                "key": "email-leads", "name": "Email lead generation +40% YoY", "owner": "mops@acme.example",
                "metric": "eventCount", "dimension_filter": EMAIL_LEADS, "baseline": "previous_year",
                "target": "+40%", "start": "2026-01-01", "end": "2026-12-31", "milestones": "quarterly",
            }],
        })

    def job(self, config: AppConfig, *, quota_floor: dict[str, int] | None = None) -> KpiJob:
        # The real connector; no retries inside a test (a 429 becomes QuotaExhausted at once).
        return KpiJob(engine=self.engine, config=config, connector_factory=lambda ga4: GA4Connector(
            property_id="123456789", endpoint=ga4.endpoint, anonymous=True,
            policy=RetryPolicy(max_attempts=1, base_delay=0.01), quota_floor=quota_floor))

    def sync_and_drain(self, config: AppConfig) -> SyncService:
        sync = SyncService(engine=self.engine, config=config, policy=RetryPolicy(max_attempts=2, base_delay=0.01))
        assert sync.run("mkt", mode="full").status == "succeeded"
        OutboxWorker(engine=self.engine, sync_service=sync).drain()
        return sync


@pytest.fixture
def world(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    monkeypatch.setenv("KPI_TEST_JIRA_TOKEN", DEFAULT_TOKEN)
    ga4 = GA4Property(today=TODAY)
    ga4_server = ThreadedServer(create_ga4(ga4)).start()
    site = JiraSite()
    jira_server = ThreadedServer(create_jira(site))
    site.base_url = jira_server.url
    jira_server.start()
    yield World(ga4=ga4, ga4_url=ga4_server.url, jira=site, jira_url=jira_server.url, engine=engine)
    jira_server.stop()
    ga4_server.stop()


def expected_by_hand() -> dict[str, Any]:
    """The worked example on 1 December 2026, from the ground truth and the documented arithmetic."""
    quarters = [(date(2026, 1, 1), date(2026, 3, 31), 0.10), (date(2026, 4, 1), date(2026, 6, 30), 0.20),
                (date(2026, 7, 1), date(2026, 9, 30), 0.30), (date(2026, 10, 1), date(2026, 12, 31), 0.40)]
    yesterday = TODAY - timedelta(days=1)
    out = []
    for start, end, uplift in quarters:
        elapsed = [d for d in days(start, end) if d <= yesterday]
        actual = sum(shown(d) for d in elapsed)
        expected = sum(leads_2025(d.replace(year=2025)) for d in elapsed) * (1 + uplift)
        total = sum(leads_2025(d.replace(year=2025)) for d in days(start, end)) * (1 + uplift)
        out.append({"actual": actual, "expected": expected, "total": total})
    return {"quarters": out, "actual": sum(q["actual"] for q in out), "expected": sum(q["expected"] for q in out),
            "target": sum(q["total"] for q in out),
            "projection": sum(q["actual"] for q in out)
            + sum(leads_2025(d.replace(year=2025)) for d in days(date(2026, 12, 1), date(2026, 12, 31))) * 1.4}


def status_by_hand(actual: float, expected: float) -> str:
    ratio = actual / expected
    return "on_track" if ratio >= 1.0 else "at_risk" if ratio >= 0.9 else "off_track"


def test_worked_example_against_the_seeded_property(world: World) -> None:
    # The sandbox's own ground truth agrees with the formula this test is written from.
    assert world.ga4.value(date(2025, 3, 3), EMAIL_LEADS, "eventCount") == leads_2025(date(2025, 3, 3)) == 46
    assert world.ga4.value(date(2026, 8, 12), EMAIL_LEADS, "eventCount") == leads_2026(date(2026, 8, 12))

    job = world.job(world.config())
    result = job.run(today=TODAY)
    assert result.status == "succeeded", result
    assert result.objectives_computed == ["email-leads"]
    # 2025-01-01 .. 2026-11-30 is 699 days: 8 chunks of up to 92 days, in 2 batchRunReports calls (5 + 3)
    assert (result.chunks_read, result.calls, result.days_read) == (8, 2, 699)

    hand = expected_by_hand()
    with session_scope(world.engine) as db:
        progress = db.execute(select(KpiProgressRow)).scalar_one()
    assert progress.as_of == date(2026, 11, 30)
    by_label = {m["label"]: m for m in progress.milestones}
    for label, quarter, status in zip(("Q1", "Q2", "Q3", "Q4"), hand["quarters"],
                                      ("on_track", "off_track", "at_risk", "on_track"), strict=True):
        m = by_label[label]
        assert m["actual"] == pytest.approx(quarter["actual"])
        assert m["expected_to_date"] == pytest.approx(quarter["expected"])
        assert m["expected_total"] == pytest.approx(quarter["total"])
        assert m["status"] == status == status_by_hand(quarter["actual"], quarter["expected"]), label
    assert (progress.milestone, progress.milestone_status) == ("Q4", "on_track")
    assert progress.actual == pytest.approx(hand["actual"])
    assert progress.expected == pytest.approx(hand["expected"])
    assert progress.status == status_by_hand(hand["actual"], hand["expected"])
    assert progress.expected_total == pytest.approx(hand["target"])
    assert progress.projection == pytest.approx(hand["projection"])

    # A second run re-reads only the lookback (3 days, one call) and changes nothing.
    again = job.run(today=TODAY)
    assert (again.calls, again.chunks_read, again.days_read, again.snapshots_changed) == (1, 1, 3, 0)


def test_quota_exhaustion_mid_backfill_resumes_where_it_stopped(world: World) -> None:
    # The first call (5 chunks of 92 days, 2 tokens each) fits in 12 tokens an hour; the second (2 + 2 + 1) not.
    world.ga4.set_quota_budget(tokens_per_hour=12)
    config = world.config()
    # An emulated budget far under GA4's standard limits: the connector is told not to assume those.
    first = world.job(config, quota_floor={}).run(today=TODAY)
    assert first.status == "incomplete" and first.resume_after is not None
    assert (first.chunks_read, first.calls) == (5, 2)  # the refused call counts; its chunks were not stored
    assert first.objectives_incomplete == ["email-leads"]
    assert world.ga4.reports_served == 5
    with session_scope(world.engine) as db:
        coverage = db.execute(select(KpiCoverageRow)).scalar_one()
        assert (coverage.fetched_from, coverage.fetched_to) == (date(2025, 1, 1), date(2026, 4, 5))  # 5 * 92 days
        assert db.scalar(select(func.count()).select_from(KpiSnapshotRow)) == 460
        assert db.scalar(select(func.count()).select_from(KpiProgressRow)) == 0  # nothing half-computed
    served_before = len(world.ga4.requests)

    world.ga4.new_hour()  # the hourly window rolls over
    second = world.job(config, quota_floor={}).run(today=TODAY)
    assert second.status == "succeeded", second
    assert (second.chunks_read, second.calls) == (3, 1)  # only what it did not have
    assert world.ga4.reports_served == 8  # 8 chunks in all, as an uninterrupted backfill reads
    starts = sorted(r["startDate"] for request in world.ga4.requests[served_before:]
                    for report in request["body"]["requests"] for r in report["dateRanges"])
    assert starts == ["2026-04-06", "2026-07-07", "2026-10-07"]
    with session_scope(world.engine) as db:
        assert db.scalar(select(func.count()).select_from(KpiSnapshotRow)) == 699
    assert second.objectives_computed == ["email-leads"]


def _comments(site: JiraSite, key: str) -> list[str]:
    issue = site.find(key)
    assert issue is not None
    return [str(comment["body"]) for comment in issue.comments]


def _linked_keys(engine: Engine) -> list[str]:
    with session_scope(engine) as db:
        return sorted(key for key, story in db.execute(select(ItemRow.key, ItemRow.story))
                      if (story or {}).get("kpi") == "email-leads")


@pytest.mark.parametrize("language", ["en", "fr"])
def test_results_are_written_to_linked_items_once(world: World, language: str) -> None:
    config = world.config(language=language)
    sync = world.sync_and_drain(config)
    linked = _linked_keys(world.engine)
    assert len(linked) >= 3
    before = {key: len(_comments(world.jira, key)) for key in linked}

    job = world.job(config)
    result = job.run(today=TODAY)
    assert result.writes_planned == 2 * len(linked)  # a comment and the KPI field, per linked item
    drained = OutboxWorker(engine=world.engine, sync_service=sync).drain()
    assert drained.failed == 0 and drained.sent == 2 * len(linked), drained.errors
    for key in linked:
        comments = _comments(world.jira, key)
        assert len(comments) == before[key] + 1
        if language == "en":
            assert "Milestone Q4" in comments[-1] and "on track" in comments[-1]
        else:
            assert "Jalon T4" in comments[-1] and "en bonne voie" in comments[-1]
        issue = world.jira.find(key)
        assert issue is not None and issue.fields.get(KPI_FIELD)  # the owned text field holds the result

    # Nothing changed: the next sync and KPI run plan nothing, and no comment is added.
    assert sync.run("mkt", mode="incremental").writes_planned == 0
    assert job.run(today=TODAY).writes_planned == 0
    with session_scope(world.engine) as db:
        assert db.scalar(select(func.count()).select_from(OutboxRow).where(OutboxRow.status == "pending")) == 0
    assert all(len(_comments(world.jira, key)) == before[key] + 1 for key in linked)


def test_a_late_correction_inside_the_lookback_updates_the_value_and_the_result(world: World) -> None:
    config = world.config()
    sync = world.sync_and_drain(config)
    job = world.job(config)
    job.run(today=TODAY)
    OutboxWorker(engine=world.engine, sync_service=sync).drain()
    linked = _linked_keys(world.engine)
    key = linked[0]
    comments = len(_comments(world.jira, key))

    # GA4 revises 28 November (inside the 3-day lookback) up by 600 leads: Q4 to date moves by ~17 %.
    corrected = date(2026, 11, 28)
    world.ga4.set_value(corrected, EMAIL_LEADS, "eventCount", leads_2026(corrected) + 600)
    result = job.run(today=TODAY)
    assert result.snapshots_changed == 1
    with session_scope(world.engine) as db:
        stored = db.execute(select(KpiSnapshotRow.value).where(KpiSnapshotRow.day == corrected)).scalar_one()
        progress = db.execute(select(KpiProgressRow)).scalar_one()
    assert stored == leads_2026(corrected) + 600
    assert progress.milestone_actual == pytest.approx(expected_by_hand()["quarters"][3]["actual"] + 600)
    assert result.writes_planned == 2 * len(linked)  # per linked item: a new comment and the field
    OutboxWorker(engine=world.engine, sync_service=sync).drain()
    assert len(_comments(world.jira, key)) == comments + 1
    assert f"{progress.milestone_actual:,.0f}" in _comments(world.jira, key)[-1]

    # A correction older than the lookback is not seen: the stored value stays (re-read it with a new backfill).
    old = date(2026, 11, 10)
    world.ga4.set_value(old, EMAIL_LEADS, "eventCount", leads_2026(old) + 600)
    result = job.run(today=TODAY)
    assert (result.snapshots_changed, result.writes_planned) == (0, 0)
    with session_scope(world.engine) as db:
        stored = db.execute(select(KpiSnapshotRow.value).where(KpiSnapshotRow.day == old)).scalar_one()
    assert stored == leads_2026(old)
    assert job.reread_from(old) == 1  # the operator asks for the days since then again
    result = job.run(today=TODAY)
    # 10 November .. 30 November read again: one value changed, Q4 up by 600 more (over 5 %): written again
    assert (result.days_read, result.snapshots_changed, result.writes_planned) == (21, 1, 2 * len(linked))


def test_a_scheduled_tick_runs_once_across_replicas(world: World) -> None:
    config = world.config()
    first, second = world.job(config), world.job(config)  # two replicas on one database
    assert first.run(today=TODAY, trigger="schedule").status == "succeeded"
    with pytest.raises(KpiUnavailable, match="ran this tick"):
        second.run(today=TODAY, trigger="schedule")
    assert second.run(today=TODAY, trigger="cli").status == "succeeded"  # a manual run is not a tick


def test_reach_from_traffic_fills_a_missing_reach_and_the_users_wins(world: World) -> None:
    config = world.config(reach={"names": "page", "days": 28})
    world.jira.set_field("MKT-5", "labels", ["page:/landing/spring-sale"], notify=False)
    world.jira.set_field("MKT-5", "Reach", None, notify=False)
    world.jira.set_field("MKT-6", "labels", ["page:/newsletter"], notify=False)  # keeps the reach it has
    sync = world.sync_and_drain(config)
    with session_scope(world.engine) as db:
        user_reach = db.execute(select(ItemRow.inputs).where(ItemRow.key == "MKT-6")).scalar_one()["reach"]
    assert user_reach is not None

    result = world.job(config).run(today=TODAY)
    assert result.status == "succeeded" and result.reach_changed == 2
    # activeUsers of the landing page over the last 28 complete days (3..30 November), as GA4 shows them.
    expected = sum(world.ga4.value(d, {"landingPage": "/landing/spring-sale"}, "activeUsers", reported=True)
                   for d in days(date(2026, 11, 3), date(2026, 11, 30)))
    assert expected > 0
    with session_scope(world.engine) as db:
        rows = {row.key: row for row in db.execute(select(ItemRow).where(ItemRow.key.in_(["MKT-5", "MKT-6"])))
                .scalars()}
    derived = [p for p in rows["MKT-5"].score_problems if p["field"] == "reach"]
    assert derived and "derived from GA4" in derived[0]["reason"] and derived[0]["value"] == f"{expected:.10g}"
    assert rows["MKT-5"].score is not None
    assert not any("derived" in p["reason"] for p in rows["MKT-6"].score_problems)  # the user's reach wins
    OutboxWorker(engine=world.engine, sync_service=sync).drain()
    issue = world.jira.find("MKT-5")
    assert issue is not None and issue.fields.get("customfield_10070") == pytest.approx(rows["MKT-5"].score)
    # Refreshing with the same traffic changes nothing.
    assert world.job(config).run(today=TODAY).reach_changed == 0
    # Turned off, the derived reach is no longer used: MKT-5 has no reach, so no score.
    plain = world.config()
    world.job(plain).run(today=TODAY)  # forgets the derived reach and rescores the source
    with session_scope(world.engine) as db:
        row = db.execute(select(ItemRow).where(ItemRow.key == "MKT-5")).scalar_one()
    assert row.score is None and any(p["reason"] == "missing input: reach" for p in row.score_problems)


def test_item_results_are_forgotten_when_the_link_goes(world: World) -> None:
    config = world.config()
    world.sync_and_drain(config)
    job = world.job(config)
    job.run(today=TODAY)
    key = _linked_keys(world.engine)[0]
    world.jira.set_field(key, "KPI", "organic-traffic", notify=False)
    sync = SyncService(engine=world.engine, config=config)
    sync.run("mkt", mode="full")
    job.run(today=TODAY)
    with session_scope(world.engine) as db:
        external_id = db.execute(select(ItemRow.external_id).where(ItemRow.key == key)).scalar_one()
        assert db.execute(select(KpiItemResultRow).where(KpiItemResultRow.external_id == external_id)).first() is None


def test_api_and_cli_show_the_objectives(world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = world.config()
    world.sync_and_drain(config)
    world.job(config).run(today=TODAY)
    hand = expected_by_hand()
    settings = Settings(admin_token=ADMIN_TOKEN, database_url=str(world.engine.url))
    app = create_app(settings=settings, config=config, engine=world.engine, start_scheduler=False)
    with TestClient(app) as client:
        assert client.get("/api/objectives").status_code == 401
        (summary,) = client.get("/api/objectives", headers=AUTH).json()
        assert (summary["key"], summary["as_of"], summary["status"]) == (
            "email-leads", "2026-11-30", status_by_hand(hand["actual"], hand["expected"]))
        assert summary["current_milestone"]["label"] == "Q4"
        assert summary["current_milestone"]["status"] == "on_track"
        assert summary["current_milestone"]["uplift"] == pytest.approx(0.40)
        assert summary["actual"] == pytest.approx(hand["actual"])
        detail = client.get("/api/objectives/email-leads", headers=AUTH).json()
        assert [m["status"] for m in detail["milestones_progress"]] == ["on_track", "off_track", "at_risk",
                                                                         "on_track"]
        assert [point["as_of"] for point in detail["series"]] == ["2026-11-30"]
        linked = {item["key"]: item for item in detail["linked_items"]}
        assert sorted(linked) == _linked_keys(world.engine)
        assert all(item["written_status"] == summary["status"] and item["written_milestone"] == "Q4"
                   for item in linked.values())
        # Planned by the KPI run, not sent yet: the API says so rather than calling it written.
        assert all(item["planned_at"] is not None and item["sent_at"] is None for item in linked.values())
        assert all("written_at" not in item for item in linked.values())
        planned = {key: datetime.fromisoformat(item["planned_at"]) for key, item in linked.items()}
    OutboxWorker(engine=world.engine, sync_service=SyncService(engine=world.engine, config=config)).drain()
    with TestClient(app) as client:
        detail = client.get("/api/objectives/email-leads", headers=AUTH).json()
        for item in detail["linked_items"]:
            assert item["sent_at"] is not None, item
            assert datetime.fromisoformat(item["sent_at"]) >= planned[item["key"]]
        assert client.get("/api/objectives/nope", headers=AUTH).status_code == 404

    path = tmp_path / "backlog-sync.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    monkeypatch.setenv("DATABASE_URL", str(world.engine.url.render_as_string(hide_password=False)))
    result = CliRunner().invoke(cli, ["kpi", "-c", str(path), "--run", "--today", "2026-12-01", "--no-write"])
    assert result.exit_code == 0, result.output
    assert "KPI run succeeded: 1 GA4 calls" in result.output  # the lookback only: the rest is stored
    assert "KPI objectives" in result.output and "Q4 (+40.0%)" in result.output and "on_track" in result.output


def test_the_daemon_schedules_one_kpi_job(world: World) -> None:
    config = world.config()
    sync = SyncService(engine=world.engine, config=config)
    daemon = Daemon(sync_service=sync)
    assert daemon.kpi is not None
    daemon.start()
    try:
        job = daemon.scheduler.get_job("kpi")
        assert job is not None and job.max_instances == 1 and job.coalesce
        ran = False
        for _ in range(200):
            with session_scope(world.engine) as db:
                row = db.get(KpiJobRow, "kpi")
                ran = row is not None and row.last_success_at is not None
            if ran:
                break
            time.sleep(0.05)
        assert ran, "the scheduled KPI run did not happen"
    finally:
        daemon.stop()


def test_a_comment_posted_by_a_worker_that_died_is_not_posted_again(world: World) -> None:
    config = world.config()
    sync = world.sync_and_drain(config)
    world.job(config).run(today=TODAY)
    linked = _linked_keys(world.engine)
    before = {key: len(_comments(world.jira, key)) for key in linked}
    # A worker claims the KPI writes, posts one comment and dies before recording that it did.
    rows = claim(world.engine, limit=100, claim_seconds=60)
    comment = next(row for row in rows if row.field == "comment")
    sync.connector("mkt").add_comment(comment.external_id, tool_for("jira").mapping.comment_body(
        str(comment.value), context=sync.context("mkt")))
    issue = world.jira.find(comment.external_id)
    assert issue is not None and len(issue.comments) == before[issue.key] + 1
    with session_scope(world.engine) as db:  # its claims lapse
        db.execute(update(OutboxRow).where(OutboxRow.status == "sending")
                   .values(claimed_until=datetime.now(UTC) - timedelta(seconds=1)))

    drained = OutboxWorker(engine=world.engine, sync_service=sync).drain()
    assert drained.failed == 0, drained.errors
    assert {key: len(_comments(world.jira, key)) for key in linked} == {key: n + 1 for key, n in before.items()}
    with session_scope(world.engine) as db:
        assert db.get(OutboxRow, comment.id).status == "sent"


def test_objectives_on_different_series_and_a_ratio_expression(world: World) -> None:
    config = world.config()
    data = config.model_dump(mode="json", exclude_none=True)
    data["objectives"].append({
        "key": "engagement", "name": "Engagement rate", "owner": "web@acme.example",
        "metric": "engagedSessions / sessions", "baseline": "previous_year", "target": "+5%",
        "start": "2026-01-01", "end": "2026-12-31", "milestones": "monthly", "split": "compound"})
    config = AppConfig.model_validate(data)
    result = world.job(config).run(today=TODAY)
    assert result.status == "succeeded" and sorted(result.objectives_computed) == ["email-leads", "engagement"]
    assert (result.chunks_read, result.calls) == (16, 4)  # two series of 8 chunks, 5 chunks a call

    def total(metric: str, start: date, end: date) -> int:
        return sum(world.ga4.value(d, {}, metric, reported=True) for d in days(start, end))

    # November is milestone 11 of 12: compound uplift 1.05 ** (11 / 12) - 1; a rate is the ratio of the sums.
    nov = (date(2026, 11, 1), date(2026, 11, 30))
    baseline_nov = (date(2025, 11, 1), date(2025, 11, 30))
    actual = total("engagedSessions", *nov) / total("sessions", *nov)
    expected = total("engagedSessions", *baseline_nov) / total("sessions", *baseline_nov) * 1.05 ** (11 / 12)
    with session_scope(world.engine) as db:
        row = db.execute(select(KpiProgressRow).where(KpiProgressRow.objective_key == "engagement")).scalar_one()
    assert (row.milestone, row.milestone_start, row.milestone_end) == ("M11", *nov)
    assert row.milestone_actual == pytest.approx(actual)
    assert row.milestone_expected == pytest.approx(expected)
    assert row.milestone_status == status_by_hand(actual, expected)


def test_partial_days_grow_to_their_final_value_as_the_clock_moves(world: World) -> None:
    job = world.job(world.config())
    job.run(today=TODAY)
    nov30 = date(2026, 11, 30)
    with session_scope(world.engine) as db:
        assert db.execute(select(KpiSnapshotRow.value).where(KpiSnapshotRow.day == nov30)).scalar_one() == round(
            leads_2026(nov30) * 0.9)  # yesterday, 90 % processed
    world.ga4.advance(1)
    result = job.run(today=TODAY + timedelta(days=1))
    # From the first day not stored as final: 28 November (last read inside the lookback, read once more now
    # that it is final) to 1 December; the 3-day lookback from 2 December is 29 November .. 1 December.
    assert (result.calls, result.days_read) == (1, 4)
    with session_scope(world.engine) as db:
        values = dict(db.execute(select(KpiSnapshotRow.day, KpiSnapshotRow.value)
                                 .where(KpiSnapshotRow.day >= date(2026, 11, 29))).all())
        series = list(db.execute(select(KpiProgressRow.as_of).order_by(KpiProgressRow.as_of)).scalars())
    assert values == {date(2026, 11, 29): leads_2026(date(2026, 11, 29)), nov30: leads_2026(nov30),
                      date(2026, 12, 1): round(leads_2026(date(2026, 12, 1)) * 0.9)}
    assert series == [nov30, date(2026, 12, 1)]  # one progress point per day of data


def test_one_objectives_bad_data_is_recorded_on_it_and_the_others_are_computed(
        world: World, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    data = world.config().model_dump(mode="json", exclude_none=True)
    # No such event in the property: the baseline adds up to 0, so an absolute target has no uplift.
    data["objectives"].append({
        "key": "launch-signups", "name": "Launch sign-ups", "owner": "web@acme.example", "metric": "eventCount",
        "dimension_filter": {"eventName": "launch_signup"}, "baseline": "previous_year", "target": 5000,
        "start": "2026-01-01", "end": "2026-12-31", "milestones": "quarterly"})
    config = AppConfig.model_validate(data)
    job = world.job(config)
    with caplog.at_level("ERROR", logger="backlog_sync.kpi"):
        result = job.run(today=TODAY)
        again = job.run(today=TODAY)
    for run in (result, again):
        assert run.status == "succeeded", run
        assert run.objectives_computed == ["email-leads"]  # the other objective is computed regardless
        assert list(run.objectives_failed) == ["launch-signups"]
    reason = result.objectives_failed["launch-signups"]
    assert reason.startswith("objectives[1] (launch-signups): ") and "baseline" in reason
    logged = [r for r in caplog.records if "launch-signups" in r.getMessage()]
    assert len(logged) == 1  # logged once, not on every run

    settings = Settings(admin_token=ADMIN_TOKEN, database_url=str(world.engine.url))
    app = create_app(settings=settings, config=config, engine=world.engine, start_scheduler=False)
    with TestClient(app) as client:
        summaries = {s["key"]: s for s in client.get("/api/objectives", headers=AUTH).json()}
        assert summaries["email-leads"]["problem"] is None and summaries["email-leads"]["status"] is not None
        detail = client.get("/api/objectives/launch-signups", headers=AUTH).json()
        assert detail["problem"] == reason and detail["status"] is None
    path = tmp_path / "backlog-sync.yaml"
    path.write_text(yaml.safe_dump(config.model_dump(mode="json", exclude_none=True)))
    monkeypatch.setenv("DATABASE_URL", str(world.engine.url.render_as_string(hide_password=False)))
    shown_table = CliRunner().invoke(cli, ["kpi", "-c", str(path)])
    assert shown_table.exit_code == 0, shown_table.output
    assert "objectives[1] (launch-signups)" in shown_table.output and "baseline" in shown_table.output

    # With data that adds up (a baseline value), it is computed and the problem goes away.
    data["objectives"][1]["baseline"] = {"value": 4000}
    fixed = world.job(AppConfig.model_validate(data)).run(today=TODAY)
    assert sorted(fixed.objectives_computed) == ["email-leads", "launch-signups"] and not fixed.objectives_failed
    with TestClient(create_app(settings=settings, config=AppConfig.model_validate(data), engine=world.engine,
                               start_scheduler=False)) as client:
        assert client.get("/api/objectives/launch-signups", headers=AUTH).json()["problem"] is None


def test_a_decrease_target_shows_one_attainment_in_the_api_and_the_written_text(world: World) -> None:
    # The same series held to -10 %: email leads grew instead, so lower-is-better attainment is expected / actual.
    data = world.config().model_dump(mode="json", exclude_none=True)
    data["objectives"][0]["target"] = "-10%"
    config = AppConfig.model_validate(data)
    sync = world.sync_and_drain(config)
    world.job(config).run(today=TODAY)
    OutboxWorker(engine=world.engine, sync_service=sync).drain()

    # Actuals from the ground truth; the linear split by quarter gives -2.5, -5, -7.5, -10 % over the baseline
    # (the +40 % example's expectations divided back by 1.1, 1.2, 1.3, 1.4 are the baseline).
    hand = expected_by_hand()
    baselines = [q["expected"] / (1 + u) for q, u in zip(hand["quarters"], (0.10, 0.20, 0.30, 0.40), strict=True)]
    q4 = hand["quarters"][3]
    q4_expected = baselines[3] * 0.90
    window_expected = sum(b * (1 + u) for b, u in zip(baselines, (-0.025, -0.05, -0.075, -0.10), strict=True))
    q4_attainment = q4_expected / q4["actual"]
    window_attainment = window_expected / hand["actual"]
    assert q4_attainment < 0.9 and window_attainment < 0.9  # off track both: leads rose, the target was a fall

    settings = Settings(admin_token=ADMIN_TOKEN, database_url=str(world.engine.url))
    app = create_app(settings=settings, config=config, engine=world.engine, start_scheduler=False)
    with TestClient(app) as client:
        detail = client.get("/api/objectives/email-leads", headers=AUTH).json()
    assert detail["status"] == "off_track" and detail["attainment"] == pytest.approx(window_attainment)
    assert detail["current_milestone"]["status"] == "off_track"
    assert detail["current_milestone"]["attainment"] == pytest.approx(q4_attainment)
    key = _linked_keys(world.engine)[0]
    comment = _comments(world.jira, key)[-1]
    assert f"expected to date ({q4_attainment * 100:.1f}%), off track." in comment
    assert f"expected ({window_attainment * 100:.1f}%), off track." in comment


def test_a_page_without_traffic_gets_no_reach_and_a_problem_not_a_reach_of_zero(world: World) -> None:
    config = world.config(reach={"names": "page", "days": 28})
    world.jira.set_field("MKT-5", "labels", ["page:/landing/not-launched-yet"], notify=False)
    world.jira.set_field("MKT-5", "Reach", None, notify=False)
    world.sync_and_drain(config)
    assert not any(world.ga4.value(d, {"landingPage": "/landing/not-launched-yet"}, "activeUsers", reported=True)
                   for d in days(date(2026, 11, 3), date(2026, 11, 30)))  # GA4 has no traffic for it

    assert world.job(config).run(today=TODAY).status == "succeeded"
    with session_scope(world.engine) as db:
        row = db.execute(select(ItemRow).where(ItemRow.key == "MKT-5")).scalar_one()
        reach = db.execute(select(KpiReachRow.reach).where(KpiReachRow.external_id == row.external_id)).scalar_one()
    assert reach is None
    assert row.score is None and row.rank is None  # unscored, not scored 0 and ranked last
    reasons = [p["reason"] for p in row.score_problems if p["field"] == "reach"]
    assert any(r.startswith("not derived: GA4 had no traffic (activeUsers) over the last 28 days for landingPage "
                            "/landing/not-launched-yet") for r in reasons), reasons
    assert "missing input: reach" in reasons
