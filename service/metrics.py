"""Prometheus metrics: syncs, vendor API calls and 429s, outbox depth and age, webhook intake and latency."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from connectors.base import observe_calls
from service.db import session_scope
from service.tables import InboxRow, OutboxRow

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class _DatabaseGauges:
    """Reads outbox and inbox depth at scrape time, so every replica reports the shared truth."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def collect(self) -> Any:
        depth = GaugeMetricFamily("backlog_sync_outbox_pending", "Writes waiting to be sent", labels=["source"])
        age = GaugeMetricFamily("backlog_sync_outbox_oldest_pending_seconds",
                                "Age of the oldest write waiting to be sent", labels=["source"])
        inbox = GaugeMetricFamily("backlog_sync_inbox_pending", "Webhook deliveries waiting to be processed",
                                  labels=["source"])
        now = datetime.now(UTC)
        try:
            with session_scope(self.engine) as db:
                for source, count, oldest in db.execute(
                    select(OutboxRow.source, func.count(), func.min(OutboxRow.created_at))
                    .where(OutboxRow.status.in_(("pending", "sending"))).group_by(OutboxRow.source)
                ):
                    depth.add_metric([source], count)
                    if oldest is not None:
                        if oldest.tzinfo is None:
                            oldest = oldest.replace(tzinfo=UTC)
                        age.add_metric([source], max(0.0, (now - oldest).total_seconds()))
                for source, count in db.execute(
                    select(InboxRow.source, func.count()).where(InboxRow.status.in_(("pending", "processing")))
                    .group_by(InboxRow.source)
                ):
                    inbox.add_metric([source], count)
        except Exception:  # a scrape during a database outage reports what it can
            pass
        yield depth
        yield age
        yield inbox


class Metrics:
    """The process's metrics; one instance per app, on its own registry."""

    def __init__(self, engine: Engine) -> None:
        self.registry = CollectorRegistry()
        self.sync_duration = Histogram("backlog_sync_sync_duration_seconds", "Duration of sync runs",
                                       ["source", "mode", "status"], registry=self.registry,
                                       buckets=(0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600))
        self.sync_items = Counter("backlog_sync_sync_items_total", "Items read by sync runs", ["source"],
                                  registry=self.registry)
        self.api_calls = Counter("backlog_sync_vendor_api_calls_total", "HTTP calls to the tools",
                                 ["vendor", "status"], registry=self.registry)
        self.rate_limited = Counter("backlog_sync_vendor_429_total", "429 answers from the tools", ["vendor"],
                                    registry=self.registry)
        self.webhooks = Counter("backlog_sync_webhooks_total", "Webhook deliveries received", ["source", "outcome"],
                                registry=self.registry)
        self.webhook_latency = Histogram("backlog_sync_webhook_processing_seconds",
                                         "Time from webhook intake to processed", ["source"], registry=self.registry,
                                         buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30))
        self.registry.register(_DatabaseGauges(engine))
        observe_calls(self.vendor_call)

    def vendor_call(self, vendor: str, status: int | None, _seconds: float) -> None:
        self.api_calls.labels(vendor, str(status) if status is not None else "error").inc()
        if status == 429:
            self.rate_limited.labels(vendor).inc()

    def sync_finished(self, source: str, mode: str, status: str, seconds: float, items: int) -> None:
        self.sync_duration.labels(source, mode, status).observe(seconds)
        self.sync_items.labels(source).inc(items)

    def webhook_received(self, source: str, *, duplicate: bool) -> None:
        self.webhooks.labels(source, "duplicate" if duplicate else "stored").inc()

    def webhook_processed(self, source: str, seconds: float) -> None:
        self.webhook_latency.labels(source).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
