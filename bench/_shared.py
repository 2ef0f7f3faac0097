"""What the benchmark scripts share: the emulated tool in a child process, the measuring child, memory and CPU."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import requests

ROOT = Path(__file__).resolve().parents[1]


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: kilobytes


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def start_sandbox(tool: str, port: int, args: list[str], *, ready: str,
                  auth: tuple[str, str] | None = None) -> tuple[subprocess.Popen[bytes], str]:
    """Starts `python -m sandbox.<tool>` on 127.0.0.1:port; returns once GET <ready> answers."""
    process = subprocess.Popen(  # noqa: S603 - the project's own emulator
        [sys.executable, "-m", f"sandbox.{tool}", "--port", str(port), *args],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        try:
            if requests.get(f"{url}{ready}", auth=auth, timeout=2).ok:
                return process, url
        except requests.ConnectionError:
            pass
        if process.poll() is not None:
            raise RuntimeError(process.stderr.read().decode() if process.stderr else "sandbox exited")
        time.sleep(0.2)
    raise RuntimeError(f"the emulated {tool} did not start")


def run_child(script: str, mode: str, args: list[str]) -> dict[str, Any]:
    """Runs one measurement in a fresh process of `script` (its own memory figures); returns its JSON line."""
    completed = subprocess.run(  # noqa: S603 - the benchmark script itself
        [sys.executable, script, "--child", mode, *args], cwd=ROOT, capture_output=True, text=True, check=False)
    if completed.returncode != 0:
        raise RuntimeError(f"{mode} failed:\n{completed.stderr[-3000:]}")
    return json.loads(completed.stdout.strip().splitlines()[-1])
