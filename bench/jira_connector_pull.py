"""Jira connector benchmark: a full pull of generated issues through JiraConnector, compared with plain
requests + json reading the same search pages; the jira library's Issue objects for the record; and an
incremental pull after 10 issues changed.

    .venv/bin/python bench/jira_connector_pull.py                    # 10,000 issues
    .venv/bin/python bench/jira_connector_pull.py --issues 100000    # the memory target at 100,000

The emulated Jira runs in its own process (python -m sandbox.jira --generate N). Each measurement runs in a
fresh child process (this script with a hidden --mode flag), so the peak RSS it reports is its own.
Targets: connector peak RSS under 300 MB at 100,000 issues; an incremental pull after 10 changes makes at
most 2 search calls and reads the 10 changed issues plus at most a few at the window's boundary.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import requests  # noqa: E402
from _shared import cpu_seconds, peak_rss_mb  # noqa: E402  (bench/_shared.py, beside this script)

from sandbox.common import free_port  # noqa: E402
from sandbox.jira import DEFAULT_EMAIL, DEFAULT_TOKEN  # noqa: E402

SEARCH = "/rest/api/3/search/jql"
SCOPE = "project = MKT"
JQL = f"({SCOPE}) ORDER BY updated ASC, id ASC"  # what the connector sends for a full pull
AUTH = (DEFAULT_EMAIL, DEFAULT_TOKEN)
CHANGED = 10


def connector(url: str, page_size: int):  # noqa: ANN201
    from connectors.jira import JiraConnector

    return JiraConnector(base_url=url, email=DEFAULT_EMAIL, token=DEFAULT_TOKEN, jql=SCOPE, page_size=page_size)


# --------------------------------------------------------------------------------------------------
# Child-process measurements: each returns one JSON object, printed as the child's last line.


def measure_connector(url: str, page_size: int) -> dict[str, Any]:
    """JiraConnector.pull(None, full=True), counting records without keeping them."""
    jira = connector(url, page_size)
    rss_before = peak_rss_mb()
    cpu_before = cpu_seconds()
    issues = pages = 0
    cursor = None
    started = time.perf_counter()
    for page in jira.pull(None, full=True):
        issues += len(page.records)
        pages += 1
        cursor = page.cursor
    seconds = time.perf_counter() - started
    jira.close()
    return {"issues": issues, "pages": pages, "search_calls": jira.calls, "seconds": seconds,
            "rate": issues / seconds, "cpu_seconds": cpu_seconds() - cpu_before, "rss_before_mb": rss_before,
            "rss_mb": peak_rss_mb(), "cursor": cursor}


def measure_baseline(url: str, page_size: int) -> dict[str, Any]:
    """Plain requests + json: POST search/jql page by nextPageToken, parse each page, count its issues."""
    session = requests.Session()
    session.auth = AUTH
    rss_before = peak_rss_mb()
    cpu_before = cpu_seconds()
    token, issues, calls = None, 0, 0
    started = time.perf_counter()
    while True:
        body: dict[str, Any] = {"jql": JQL, "maxResults": page_size, "fields": ["*all"]}
        if token:
            body["nextPageToken"] = token
        response = session.post(url + SEARCH, json=body, timeout=120)
        response.raise_for_status()
        page = response.json()
        calls += 1
        issues += len(page["issues"])
        token = page.get("nextPageToken")
        if page.get("isLast", True) or not token:
            break
    seconds = time.perf_counter() - started
    return {"issues": issues, "search_calls": calls, "seconds": seconds, "rate": issues / seconds,
            "cpu_seconds": cpu_seconds() - cpu_before, "rss_before_mb": rss_before, "rss_mb": peak_rss_mb()}


def measure_objects(url: str, page_size: int, limit: int) -> dict[str, Any]:
    """The jira library's Issue objects (no json_result) over `limit` issues, then raw JSON over the same span."""
    from jira.resources import Issue

    jira = connector(url, page_size)
    jira.describe()  # deployment type (search/jql is Cloud-only in the library) and the field cache, untimed
    client = jira._jira
    rss_before = peak_rss_mb()

    def span(json_result: bool) -> tuple[int, int, float, float]:
        token, issues, calls = None, 0, 0
        cpu_before = cpu_seconds()
        started = time.perf_counter()
        while issues < limit:
            page = client.enhanced_search_issues(JQL, nextPageToken=token, maxResults=page_size, fields=["*all"],
                                                 json_result=json_result, use_post=True)
            calls += 1
            if json_result:
                issues += len(page["issues"])
                token = None if page.get("isLast", True) else page.get("nextPageToken")
            else:
                issues += len(page)
                token = page.nextPageToken
            if not token:
                break
        return issues, calls, time.perf_counter() - started, cpu_seconds() - cpu_before

    issues, calls, seconds, cpu = span(json_result=False)
    rss = peak_rss_mb()
    raw_issues, _, raw_seconds, raw_cpu = span(json_result=True)

    # What one page costs to hold, as parsed JSON and as Issue objects built from it (tracemalloc, untimed).
    text = jira._session.post(url + SEARCH, json={"jql": JQL, "maxResults": page_size, "fields": ["*all"]}).text
    tracemalloc.start()
    raws = json.loads(text)["issues"]
    raw_bytes = tracemalloc.get_traced_memory()[0]
    objects = [Issue(client._options, client._session, raw) for raw in json.loads(text)["issues"]]
    both_bytes = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    per_page = len(raws) or 1
    del objects
    jira.close()
    return {"issues": issues, "search_calls": calls, "seconds": seconds, "rate": issues / seconds,
            "cpu_seconds": cpu, "rss_before_mb": rss_before, "rss_mb": rss,
            "raw_issues": raw_issues, "raw_seconds": raw_seconds, "raw_rate": raw_issues / raw_seconds,
            "raw_cpu_seconds": raw_cpu,
            "raw_kb_per_issue": raw_bytes / per_page / 1024,
            "objects_kb_per_issue": (both_bytes - raw_bytes) / per_page / 1024}


def measure_incremental(url: str, page_size: int, cursor: str) -> dict[str, Any]:
    """JiraConnector.pull(cursor) with the cursor the full pull's last page gave."""
    jira = connector(url, page_size)
    keys: list[str] = []
    last_cursor = None
    started = time.perf_counter()
    for page in jira.pull(cursor):
        keys.extend(str(record.get("key")) for record in page.records)
        last_cursor = page.cursor
    seconds = time.perf_counter() - started
    jira.close()
    return {"records": len(keys), "keys": keys, "search_calls": jira.calls, "seconds": seconds,
            "cursor_in": cursor, "cursor_out": last_cursor, "rss_mb": peak_rss_mb()}


# --------------------------------------------------------------------------------------------------
# The parent: the sandbox process, the children, the report.


class Sandbox:
    """python -m sandbox.jira --generate N in its own process; its CPU time and peak RSS read from /proc."""

    def __init__(self, issues: int) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()
        self.process = subprocess.Popen(
            [sys.executable, "-m", "sandbox.jira", "--port", str(self.port), "--generate", str(issues)],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=self.log,
        )

    def wait_ready(self, timeout: float = 900) -> float:
        started = time.perf_counter()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self.log.seek(0)
                raise RuntimeError(f"the emulated Jira exited:\n{self.log.read().decode(errors='replace')[-3000:]}")
            try:
                if requests.get(f"{self.url}/rest/api/3/serverInfo", auth=AUTH, timeout=2).ok:
                    return time.perf_counter() - started
            except requests.RequestException:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"the emulated Jira did not answer within {timeout:.0f}s")

    def cpu_seconds(self) -> float:
        fields = Path(f"/proc/{self.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime

    def peak_rss_mb(self) -> float:
        for line in Path(f"/proc/{self.process.pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
        return 0.0

    def searches(self) -> int:
        counters = requests.get(f"{self.url}/_sandbox/counters", timeout=30).json()["counters"]
        return int(counters.get(f"POST {SEARCH}", 0))

    def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        response = requests.post(self.url + path, json=body, timeout=30)
        response.raise_for_status()
        return response.json()

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(timeout=30)
        self.log.close()


def child(sandbox: Sandbox, mode: str, page_size: int, *extra: str) -> dict[str, Any]:
    """Runs one measurement in a fresh process of this script; adds the sandbox's share of the work."""
    searches, sandbox_cpu = sandbox.searches(), sandbox.cpu_seconds()
    completed = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--mode", mode, "--url", sandbox.url,
         "--page-size", str(page_size), *extra],
        cwd=ROOT, capture_output=True, text=True, check=False, timeout=3600,
    )
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{completed.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(completed.stdout.strip().splitlines()[-1])
    result["sandbox_searches"] = sandbox.searches() - searches
    result["sandbox_cpu_seconds"] = sandbox.cpu_seconds() - sandbox_cpu
    return result


def run_child_mode(args: argparse.Namespace) -> None:
    if args.mode == "connector":
        result = measure_connector(args.url, args.page_size)
    elif args.mode == "baseline":
        result = measure_baseline(args.url, args.page_size)
    elif args.mode == "objects":
        result = measure_objects(args.url, args.page_size, args.limit)
    elif args.mode == "incremental":
        result = measure_incremental(args.url, args.page_size, args.cursor)
    else:
        raise SystemExit(f"unknown mode {args.mode!r}")
    print(json.dumps(result))  # noqa: T201


def table(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.ljust(widths[i]) if i == 0 else cell.rjust(widths[i]) for i, cell in enumerate(row))
             for row in rows]
    lines.insert(1, "  ".join("-" * width for width in widths))
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--issues", type=int, default=10_000, help="generated issues in the emulated Jira")
    parser.add_argument("--page-size", type=int, default=100, help="issues per search page (Jira caps it at 100)")
    parser.add_argument("--skip-baseline", action="store_true", help="leave out the plain requests baseline")
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--limit", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cursor", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mode:
        run_child_mode(args)
        return

    total_started = time.perf_counter()
    print(f"starting the emulated Jira with {args.issues} generated issues ...", flush=True)  # noqa: T201
    sandbox = Sandbox(args.issues)
    try:
        startup = sandbox.wait_ready()
        one = requests.post(sandbox.url + SEARCH, auth=AUTH, timeout=60,
                            json={"jql": JQL, "maxResults": 1, "fields": ["*all"]}).json()["issues"][0]
        issue_bytes = len(json.dumps(one).encode())
        print(f"  ready in {startup:.1f}s; one issue with fields=*all is {issue_bytes / 1024:.1f} KB", flush=True)  # noqa: T201

        print("connector full pull ...", flush=True)  # noqa: T201
        full = child(sandbox, "connector", args.page_size)
        baseline = None
        if not args.skip_baseline:
            print("plain requests baseline ...", flush=True)  # noqa: T201
            baseline = child(sandbox, "baseline", args.page_size)
        limit = min(args.issues, 2000)
        print(f"jira Issue objects over {limit} issues ...", flush=True)  # noqa: T201
        objects = child(sandbox, "objects", args.page_size, "--limit", str(limit))

        print(f"incremental pull after {CHANGED} edits ...", flush=True)  # noqa: T201
        sandbox.post("/_sandbox/clock", {"seconds": 180})
        step = max(1, args.issues // CHANGED)
        edited = [sandbox.post("/_sandbox/edit", {"issue": f"MKT-{1 + i * step}", "field": "Reach",
                                                  "value": 12345})["key"] for i in range(min(CHANGED, args.issues))]
        incremental = child(sandbox, "incremental", args.page_size, "--cursor", str(full["cursor"]))
        sandbox_rss = sandbox.peak_rss_mb()
    finally:
        sandbox.stop()

    read = set(incremental["keys"])
    incremental["edited"] = edited
    incremental["missing"] = sorted(set(edited) - read)
    incremental["boundary_extra"] = len(read - set(edited))
    del incremental["keys"]

    def share(result: dict[str, Any]) -> str:
        return f"{result['sandbox_cpu_seconds'] / result['seconds'] * 100:.0f}%"

    rows: list[tuple[str, ...]] = [
        ("measurement", "issues", "issues/s", "wall s", "searches", "client CPU s", "sandbox CPU", "peak RSS MB"),
        ("connector full pull (raw JSON)", str(full["issues"]), f"{full['rate']:.0f}", f"{full['seconds']:.1f}",
         str(full["search_calls"]), f"{full['cpu_seconds']:.1f}", share(full), f"{full['rss_mb']:.0f}"),
    ]
    if baseline:
        rows.append(("plain requests + json", str(baseline["issues"]), f"{baseline['rate']:.0f}",
                     f"{baseline['seconds']:.1f}", str(baseline["search_calls"]), f"{baseline['cpu_seconds']:.1f}",
                     share(baseline), f"{baseline['rss_mb']:.0f}"))
    rows += [
        ("jira Issue objects", str(objects["issues"]), f"{objects['rate']:.0f}", f"{objects['seconds']:.1f}",
         str(objects["search_calls"]), f"{objects['cpu_seconds']:.1f}", "", f"{objects['rss_mb']:.0f}"),
        ("  same span, raw JSON", str(objects["raw_issues"]), f"{objects['raw_rate']:.0f}",
         f"{objects['raw_seconds']:.1f}", "", f"{objects['raw_cpu_seconds']:.1f}", "", ""),
        (f"incremental after {CHANGED} edits", str(incremental["records"]), "", f"{incremental['seconds']:.2f}",
         str(incremental["search_calls"]), "", "", f"{incremental['rss_mb']:.0f}"),
    ]
    ratio = full["rate"] / baseline["rate"] if baseline else None
    summary = {
        "issues": args.issues, "page_size": args.page_size, "issue_bytes": issue_bytes,
        "sandbox_startup_seconds": startup, "sandbox_peak_rss_mb": sandbox_rss,
        "connector": full, "baseline": baseline, "ratio_connector_to_baseline": ratio, "objects": objects,
        "objects_slowdown": objects["raw_rate"] / objects["rate"], "incremental": incremental,
        "targets": {
            "connector_rss_under_300mb": full["rss_mb"] < 300,
            "incremental_at_most_2_searches": incremental["search_calls"] <= 2,
            "incremental_read_all_edits": not incremental["missing"],
        },
        "total_seconds": time.perf_counter() - total_started,
    }
    print()  # noqa: T201
    print(f"{args.issues} generated issues, {issue_bytes / 1024:.1f} KB each with fields=*all, page size "  # noqa: T201
          f"{args.page_size}; sandbox ready in {startup:.1f}s, sandbox peak RSS {sandbox_rss:.0f} MB")
    print(table(rows))  # noqa: T201
    if ratio is not None:
        print(f"connector / baseline rate: {ratio:.2f}")  # noqa: T201
    print(f"Issue objects: {summary['objects_slowdown']:.1f}x slower than raw JSON over the same "  # noqa: T201
          f"{objects['issues']} issues; a page held costs {objects['raw_kb_per_issue']:.1f} KB/issue as parsed JSON, "
          f"{objects['objects_kb_per_issue']:.1f} KB/issue as Issue objects (which keep that JSON too)")
    print(f"incremental: {incremental['records']} records ({len(edited)} edited, {incremental['boundary_extra']} "  # noqa: T201
          f"boundary extra, missing {incremental['missing'] or 'none'}), {incremental['search_calls']} search "
          f"call(s); cursor {incremental['cursor_in']} -> {incremental['cursor_out']}")
    print("sandbox CPU = the emulated Jira's CPU time during the run / wall time (near 100%: it is the bottleneck)")  # noqa: T201
    print(f"targets: {json.dumps(summary['targets'])}; total {summary['total_seconds']:.0f}s")  # noqa: T201
    print(json.dumps(summary))  # noqa: T201


if __name__ == "__main__":
    main()
