"""GA4 connector benchmark: how many calls and tokens a KPI backfill and a large paged report cost through
GA4Connector, and the client's CPU per row against plain requests + json reading the same pages.

    .venv/bin/python bench/ga4_reports.py

The emulated GA4 property runs in its own process (python -m sandbox.ga4), so the CPU figures are the
client's alone. Scenarios:
- backfill: two years of daily values for 4 objective series in 92-day chunks (32 reports);
- large report: every (date, channel, event, landing page) of 23 months, 10,000 rows a page.
The baseline posts the same report bodies one page after another with requests and json.loads (no typing).
"""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from _shared import cpu_seconds  # noqa: E402  (bench/_shared.py, beside this script)

from connectors.ga4 import GA4Connector, ReportSpec  # noqa: E402
from sandbox.common import free_port  # noqa: E402
from sandbox.ga4 import PROPERTY_ID  # noqa: E402

SERIES = [
    (("eventName", "generate_lead"), ("sessionDefaultChannelGroup", "Email")),
    (("eventName", "generate_lead"), ("sessionDefaultChannelGroup", "Organic Search")),
    (("eventName", "form_start"), ("landingPage", "/landing/spring-sale")),
    (("eventName", "session_start"), ("landingPage", "/newsletter")),
]
LARGE = ReportSpec(metrics=("eventCount", "sessions", "activeUsers"), start_date=date(2025, 1, 1),
                   end_date=date(2026, 11, 30),
                   dimensions=("date", "sessionDefaultChannelGroup", "eventName", "landingPage"))


def chunks(start: date, end: date, days: int) -> list[tuple[date, date]]:
    out = []
    while start <= end:
        out.append((start, min(end, start + timedelta(days=days - 1))))
        start += timedelta(days=days)
    return out


def tokens_used(url: str) -> int:
    return int(requests.get(f"{url}/_sandbox/ga4", timeout=10).json()["consumed"]["tokensPerDay"])


def measure(url: str, specs: list[ReportSpec], page_size: int) -> dict[str, Any]:
    before = tokens_used(url)
    with GA4Connector(property_id=PROPERTY_ID, endpoint=url, anonymous=True, page_size=page_size) as connector:
        cpu, wall = cpu_seconds(), time.perf_counter()
        results = connector.run_reports(specs)
        cpu, wall = cpu_seconds() - cpu, time.perf_counter() - wall
        calls = connector.calls
    rows = sum(len(r) for r in results)
    return {"reports": len(specs), "rows": rows, "calls": calls, "tokens": tokens_used(url) - before,
            "seconds": wall, "client_cpu": cpu}


def baseline(url: str, spec: ReportSpec, page_size: int) -> dict[str, Any]:
    """Plain requests + json: the same report, one runReport page after another, values left as strings."""
    body: dict[str, Any] = {
        "dimensions": [{"name": d} for d in spec.dimensions], "metrics": [{"name": m} for m in spec.metrics],
        "dateRanges": [{"startDate": spec.start_date.isoformat(), "endDate": spec.end_date.isoformat()}],
        "orderBys": [{"dimension": {"dimensionName": d, "orderType": 1}} for d in spec.dimensions],
        "limit": str(page_size), "returnPropertyQuota": True}
    session = requests.Session()
    cpu, wall = cpu_seconds(), time.perf_counter()
    rows = calls = offset = 0
    while True:
        answer = session.post(f"{url}/v1beta/properties/{PROPERTY_ID}:runReport",
                              params={"$alt": "json;enum-encoding=int"}, json={**body, "offset": str(offset)},
                              timeout=120).json()
        calls += 1
        page = answer.get("rows", [])
        rows += len(page)
        offset += len(page)
        if not page or offset >= answer.get("rowCount", 0):
            break
    return {"rows": rows, "calls": calls, "seconds": time.perf_counter() - wall, "client_cpu": cpu_seconds() - cpu}


def main() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "sandbox.ga4", "--port", str(port)], cwd=ROOT,
                              stdout=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                requests.get(f"{url}/_sandbox/ga4", timeout=1)
                break
            except requests.ConnectionError:
                time.sleep(0.1)
        backfill = [ReportSpec(metrics=("eventCount",), start_date=a, end_date=b, filters=filters)
                    for filters in SERIES for a, b in chunks(date(2025, 1, 1), date(2026, 11, 30), 92)]
        figures = measure(url, backfill, 10_000)
        print(f"backfill: {figures['reports']} reports ({figures['rows']} daily rows) in {figures['calls']} calls, "  # noqa: T201
              f"{figures['tokens']} tokens, {figures['seconds']:.2f} s, client CPU {figures['client_cpu']:.2f} s")
        large = measure(url, [LARGE], 10_000)
        plain = baseline(url, LARGE, 10_000)
        print(f"large report: {large['rows']} rows in {large['calls']} calls (plain paging: {plain['calls']} "  # noqa: T201
              f"calls), {large['tokens']} tokens, {large['seconds']:.2f} s vs {plain['seconds']:.2f} s; client CPU "
              f"{large['client_cpu']:.2f} s vs {plain['client_cpu']:.2f} s "
              f"({1e6 * large['client_cpu'] / large['rows']:.1f} vs {1e6 * plain['client_cpu'] / plain['rows']:.1f}"
              " us a row)")
    finally:
        server.terminate()
        server.wait(timeout=10)


if __name__ == "__main__":
    main()
