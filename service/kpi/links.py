"""Which items an objective concerns (their KPI story field or a kpi:<key> label), and which page, channel
or segment an item names for its derived reach. Pure functions over stored item values."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any

KPI_LABEL_PREFIX = "kpi:"
# "Target page: /landing/spring-sale", "Landing page: ...", "Page cible : ...", "Page de destination : ..."
_PAGE_LINE = re.compile(
    r"^\s*(?:target page|landing page|page cible|page de destination)\s*:\s*(\S+)", re.IGNORECASE | re.MULTILINE)


def normalise_name(text: str) -> str:
    """Case-, accent- and punctuation-insensitive form: 'Email-Leads' == 'email leads' == 'EMAIL_LÉADS'."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    plain = "".join(c for c in decomposed if not unicodedata.combining(c))
    return " ".join(re.sub(r"[^0-9a-z%+]+", " ", plain).split())


def objective_names(key: str, name: str, aliases: Iterable[str] = ()) -> set[str]:
    """The normalised names an item may use for an objective."""
    return {normalise_name(value) for value in (key, name, *aliases) if normalise_name(value)}


def linked_objectives(story: Mapping[str, Any] | None, labels: Iterable[str] | None,
                      names_by_key: Mapping[str, set[str]]) -> list[str]:
    """The keys of the objectives an item is linked to, through its KPI story field or kpi:<key> labels."""
    wanted: set[str] = set()
    kpi = (story or {}).get("kpi")
    if isinstance(kpi, str) and kpi.strip():
        # A KPI field may list several ("email-leads, organic-traffic"); each part, and the whole, can match.
        wanted.add(normalise_name(kpi))
        wanted.update(normalise_name(part) for part in re.split(r"[,;\n]", kpi) if part.strip())
    for label in labels or ():
        if label.casefold().startswith(KPI_LABEL_PREFIX):
            wanted.add(normalise_name(label[len(KPI_LABEL_PREFIX):]))
    return sorted(key for key, names in names_by_key.items() if names & wanted)


def named_page(labels: Iterable[str] | None, description: str | None, *, label_prefix: str) -> str | None:
    """The page path an item names: a label '<prefix>/path' first, else a 'Target page: /path' line."""
    for label in labels or ():
        if label.casefold().startswith(label_prefix.casefold()):
            value = label[len(label_prefix):].strip()
            if value:
                return _page_path(value)
    match = _PAGE_LINE.search(description or "")
    return _page_path(match.group(1)) if match else None


def _page_path(value: str) -> str:
    """A URL or a path -> the path GA4 reports ('https://x.com/a?b' -> '/a'); trailing punctuation dropped."""
    value = value.rstrip(".,;)")
    if "://" in value:
        value = "/" + value.split("://", 1)[1].partition("/")[2]
    value = value.split("#", 1)[0].split("?", 1)[0]
    return value if value.startswith("/") else "/" + value


def named_value(kind: str, story: Mapping[str, Any] | None, labels: Iterable[str] | None, description: str | None,
                *, label_prefix: str) -> str | None:
    """What an item names for its derived reach: a page path, its channel or its target segment."""
    if kind == "page":
        return named_page(labels, description, label_prefix=label_prefix)
    value = (story or {}).get("channel" if kind == "channel" else "segment")
    return value.strip() if isinstance(value, str) and value.strip() else None


def match_dimension_value(named: str, values: Mapping[str, float], *, kind: str) -> float | None:
    """Finds the GA4 row of a named page (exact path, or with/without its trailing slash) or channel/segment
    (case- and accent-insensitively); None when GA4 has no traffic for it."""
    if kind == "page":
        for candidate in (named, named.rstrip("/") or "/", named.rstrip("/") + "/"):
            if candidate in values:
                return values[candidate]
        return None
    wanted = normalise_name(named)
    for value, number in values.items():
        if normalise_name(value) == wanted:
            return number
    return None
