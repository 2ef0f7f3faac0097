"""KPI job benchmark: objectives on many GA4 series (every channel x event of the emulated property), a full
backfill of their baseline and window, then a steady-state run that only re-reads the lookback.

    .venv/bin/python bench/kpi_job.py                  # 28 objectives (7 channels x 4 events), SQLite file
    .venv/bin/python bench/kpi_job.py --chunk-days 31  # smaller chunks: more reports, same calls per 5

The emulated GA4 property runs in this process, over real HTTP with the official client. Prints wall time,
GA4 calls, chunks and values stored for each run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sandbox.common import ThreadedServer  # noqa: E402
from sandbox.ga4 import GA4Property, create_app  # noqa: E402
from sandbox.ga4_data import CHANNELS, EVENTS  # noqa: E402
from service.config import AppConfig  # noqa: E402
from service.db import make_engine, upgrade  # noqa: E402
from service.kpi.job import KpiJob  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chunk-days", type=int, default=92)
    args = parser.parse_args()
    ga4 = GA4Property(today=date(2026, 12, 1))
    ga4.set_quota_budget(tokens_per_day=10**9, tokens_per_hour=10**9, tokens_per_project_per_hour=10**9)
    server = ThreadedServer(create_app(ga4)).start()
    objectives = [{
        "key": f"{event}-{channel}".lower().replace(" ", "-").replace("_", "-"), "name": f"{event} from {channel}",
        "owner": "bench", "metric": "eventCount", "baseline": "previous_year", "target": "+20%",
        "dimension_filter": {"eventName": event, "sessionDefaultChannelGroup": channel},
        "start": "2026-01-01", "end": "2026-12-31", "milestones": "monthly",
    } for channel in CHANNELS for event in EVENTS]
    config = AppConfig.model_validate({
        "ga4": {"property_id": "123456789", "endpoint": server.url, "anonymous": True,
                "backfill_chunk_days": args.chunk_days},
        "objectives": objectives})
    with tempfile.TemporaryDirectory() as workdir:
        url = f"sqlite:///{Path(workdir) / 'bench.db'}"
        upgrade(url)
        engine = make_engine(url)
        job = KpiJob(engine=engine, config=config)
        for label in ("backfill", "steady state"):
            started = time.perf_counter()
            result = job.run(today=date(2026, 12, 1))
            elapsed = time.perf_counter() - started
            print(f"{label}: {len(objectives)} objectives in {elapsed:.2f}s; {result.calls} GA4 calls, "  # noqa: T201
                  f"{result.chunks_read} chunks, {result.days_read} series-days read, "
                  f"{result.snapshots_changed} values stored; status {result.status}")
        job.close()
        engine.dispose()
    server.stop()


if __name__ == "__main__":
    main()
