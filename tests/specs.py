"""Where the tests find vendor material: payload fixtures in the repository, OpenAPI specs beside it."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
JIRA_EXAMPLES = ROOT / "tests" / "fixtures" / "jira"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def spec_path(name: str) -> Path:
    """The vendor spec `name`; fails in CI and skips elsewhere (saying where it looked) when it is missing."""
    places = [Path(p) for p in [os.environ.get("BACKLOG_SYNC_SPECS")] if p]
    places += [ROOT.parent / "shared" / "specs", Path("/work/shared/specs")]
    for place in places:
        if (place / name).is_file():
            return place / name
    where = ", ".join(str(p) for p in places)
    if IN_CI:
        pytest.fail(f"the vendor spec {name} is in none of: {where} (set BACKLOG_SYNC_SPECS)", pytrace=False)
    pytest.skip(f"the vendor spec {name} is in none of: {where} (set BACKLOG_SYNC_SPECS)")
