"""The daemon's jobs: one incremental sync per source on its interval, the KPI job, and the outbox drain.

Like a Home Assistant coordinator: one job per source, max_instances=1, coalesce=True, started and
stopped in the FastAPI lifespan; failures are logged on the edge by the sync service."""

from __future__ import annotations

import logging
import threading
from typing import Any

from apscheduler.schedulers.background import BackgroundScheduler

from service.inbox import InboxWorker
from service.kpi.job import KpiJob, KpiUnavailable
from service.outbox import OutboxWorker
from service.sync import SourceUnavailable, SyncService

log = logging.getLogger("backlog_sync.scheduler")


class Daemon:
    """Owns the scheduler and the services its jobs call."""

    def __init__(self, *, sync_service: SyncService, on_webhook_processed: Any = None) -> None:
        self.sync = sync_service
        self.outbox = OutboxWorker(engine=sync_service.engine, sync_service=sync_service)
        self.inbox = InboxWorker(engine=sync_service.engine, sync_service=sync_service, outbox=self.outbox,
                                 debounce_seconds=sync_service.config.webhook_debounce_seconds,
                                 on_processed=on_webhook_processed)
        config = sync_service.config
        uses_ga4 = config.ga4 is not None and (config.objectives or any(s.reach_from_ga4 for s in config.sources))
        self.kpi = KpiJob(engine=sync_service.engine, config=config) if uses_ga4 else None
        self.scheduler = BackgroundScheduler(timezone="UTC", job_defaults={"max_instances": 1, "coalesce": True,
                                                                           "misfire_grace_time": 60})

    def start(self) -> None:
        config = self.sync.config
        for source in config.sources:
            if not source.schedule.enabled:
                continue
            self.scheduler.add_job(
                self.scheduled_sync, "interval", seconds=source.schedule.interval_seconds, args=[source.name],
                id=f"sync:{source.name}", name=f"sync {source.name}", next_run_time=_now(),
            )
        self.scheduler.add_job(self.drain_outbox, "interval", seconds=config.outbox_interval_seconds,
                               id="outbox", name="outbox drain")
        if self.kpi is not None and config.ga4 is not None and config.ga4.schedule.enabled:
            # One job for every objective; on several replicas the job's lease lets one of them run each tick.
            self.scheduler.add_job(self.scheduled_kpi, "interval", seconds=config.ga4.schedule.interval_seconds,
                                   id="kpi", name="KPI objectives", next_run_time=_now())
        self.scheduler.start()
        self.inbox.start()
        log.info("scheduler started: %d source jobs, outbox every %ss",
                 len([s for s in config.sources if s.schedule.enabled]), config.outbox_interval_seconds)

    def stop(self) -> None:
        self.inbox.stop()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=True)
        self.sync.close()
        if self.kpi is not None:
            self.kpi.close()

    def scheduled_kpi(self) -> None:
        assert self.kpi is not None
        try:
            result = self.kpi.run(trigger="schedule")
        except KpiUnavailable as exc:
            log.debug("skipped the KPI run: %s", exc)
            return
        if result.writes_planned:
            self.drain_outbox()

    def scheduled_sync(self, name: str) -> None:
        try:
            result = self.sync.run(name, trigger="schedule")
        except SourceUnavailable as exc:
            log.debug("skipped scheduled sync: %s", exc)
            return
        if result.status == "succeeded" and result.writes_planned:
            self.drain_outbox()

    def trigger_sync(self, name: str, *, mode: str, trigger: str = "api") -> None:
        """Runs a sync now on the scheduler's threads (one at a time per source); without a running scheduler
        (run_scheduler=false), on a thread of its own; the source's lease keeps it to one run at a time."""
        if not self.scheduler.running:
            threading.Thread(target=self._manual_sync, args=(name, mode, trigger), name=f"manual-sync-{name}",
                             daemon=True).start()
            return
        self.scheduler.add_job(self._manual_sync, args=[name, mode, trigger], id=f"manual:{name}",
                               replace_existing=True, max_instances=1)

    def _manual_sync(self, name: str, mode: str, trigger: str) -> None:
        try:
            self.sync.run(name, mode=mode, trigger=trigger)
        except SourceUnavailable as exc:
            log.info("requested sync not run: %s", exc)
            return
        except Exception:  # a thread of its own has nobody else to report to
            log.exception("requested sync of %s failed", name)
            return
        self.drain_outbox()

    def drain_outbox(self) -> Any:
        try:
            return self.outbox.drain()
        except Exception:  # the next tick tries again; the rows stay claimed until their claim expires
            log.exception("outbox drain failed")
            return None


def _now() -> Any:
    from datetime import UTC, datetime

    return datetime.now(UTC)
