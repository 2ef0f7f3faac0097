"""Tolerant readers for the odd values tools hold ("42", "42,5", "80%", "", None), returning (value, reason).

A reader never raises. It returns `(value, None)` for a usable value, `(None, None)` when the value is
simply missing (None, "", whitespace), and `(None, reason)` when something is there but unusable, so a
mapper can record a `Problem` naming the reason instead of failing.
"""

from __future__ import annotations

import math
import re
import unicodedata
from datetime import date, datetime
from typing import Any

Reading = tuple[Any, str | None]

# Spaces people (and French locales) put inside numbers: "1 200", "1\u202f200", "80\u00a0%".
_NUMBER_SPACES = re.compile(r"[\s\u00a0\u202f\u2009\u2007']")
_NUMBER_TEXT = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")

RICE_IMPACTS = (0.25, 0.5, 1.0, 2.0, 3.0)
IMPACT_WORDS = {
    "massive": 3.0,
    "massif": 3.0,
    "high": 2.0,
    "eleve": 2.0,  # élevé, matched without accents
    "medium": 1.0,
    "moyen": 1.0,
    "low": 0.5,
    "faible": 0.5,
    "minimal": 0.25,
    "minime": 0.25,
}
IMPACT_REASON = "impact must be one of 0.25, 0.5, 1, 2, 3"


def _is_missing(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())


def _short(raw: Any) -> str:
    return repr(raw)[:60]


def read_number(raw: Any) -> Reading:
    """Reads a finite number from an int, float or text ("42", "42,5", " 1 200 ", "80%" -> 80).

    Separators: with both "," and "." present, the last one is the decimal mark ("1,200.5", "1.200,5");
    with only commas, one comma is a decimal mark ("42,5") and several are thousands ("1,200,000").
    Booleans, NaN and infinities are refused: a checkbox or a division by zero is not a score input here
    (Trello's mapping turns its checkbox fields into 1 or 0 before they reach this reader, as its README says).
    """
    if _is_missing(raw):
        return None, None
    if isinstance(raw, bool):
        return None, f"expected a number, got a boolean ({raw})"
    if isinstance(raw, int):
        if abs(raw) >= 2**53:
            return None, "number is too large to be exact"
        return float(raw), None
    if isinstance(raw, float):
        if not math.isfinite(raw):
            return None, f"number is not finite ({raw})"
        return raw, None
    if not isinstance(raw, str):
        return None, f"expected a number, got {type(raw).__name__}"
    if len(raw) <= 15 and raw.isascii() and raw.isdigit():
        return float(raw), None  # "42", as Trello holds every number: nothing to clean, and exact and finite
    text = _NUMBER_SPACES.sub("", raw)
    if text.endswith("%"):
        text = text[:-1]
    if "," in text and "." in text:
        if text.rfind(",") > text.rfind("."):
            text = text.replace(".", "").replace(",", ".")
        else:
            text = text.replace(",", "")
    elif text.count(",") == 1:
        text = text.replace(",", ".")
    elif text.count(",") > 1:
        text = text.replace(",", "")
    if not _NUMBER_TEXT.fullmatch(text):
        return None, f"not a number: {_short(raw)}"
    value = float(text)
    if not math.isfinite(value):
        return None, f"number is not finite: {_short(raw)}"
    return value, None


def read_percent(raw: Any) -> Reading:
    """Reads a percentage on 0..100 ("80", "80%", 80.0).

    A value strictly between 0 and 1 is refused rather than multiplied by 100: 0.8 may mean 80 % or
    0.8 %, and guessing would silently distort a score. The reason tells the user to write 80.
    """
    value, reason = read_number(raw)
    if value is None:
        return None, reason
    if value < 0 or value > 100:
        return None, f"percent must be between 0 and 100, got {value:g}"
    if 0 < value < 1:
        return None, f"percent must be written on 0..100 (80, not 0.8), got {value:g}"
    return value, None


def read_impact(raw: Any) -> Reading:
    """Reads a RICE impact: one of 0.25, 0.5, 1, 2, 3, or a word (massive/high/medium/low/minimal, FR too)."""
    if isinstance(raw, str) and raw.strip():
        decomposed = unicodedata.normalize("NFKD", raw.strip().casefold())
        word = " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).split())
        if word in IMPACT_WORDS:
            return IMPACT_WORDS[word], None
    value, reason = read_number(raw)
    if value is None:
        if reason is not None and isinstance(raw, str):
            return None, f"{IMPACT_REASON} (or massive/high/medium/low/minimal), got {_short(raw)}"
        return None, reason
    for allowed in RICE_IMPACTS:
        if math.isclose(value, allowed):
            return allowed, None
    return None, f"{IMPACT_REASON}, got {value:g}"


def read_date(raw: Any) -> Reading:
    """Reads a calendar date from a date, a datetime or ISO text ("2026-03-01", "2026-03-01T10:00:00Z")."""
    if _is_missing(raw):
        return None, None
    if isinstance(raw, datetime):
        return raw.date(), None
    if isinstance(raw, date):
        return raw, None
    if not isinstance(raw, str):
        return None, f"expected a date, got {type(raw).__name__}"
    text = raw.strip()
    try:
        return date.fromisoformat(text), None
    except ValueError:
        pass
    # A due date stored as a timestamp keeps the calendar day as written, not converted to UTC.
    moment, _ = _parse_datetime_text(text)
    if moment is not None:
        return moment.date(), None
    return None, f"not an ISO date (YYYY-MM-DD): {_short(raw)}"


def read_datetime(raw: Any) -> Reading:
    """Reads a time-zone-aware datetime (Jira "2026-03-01T10:15:30.000+0100", ISO with "Z").

    A naive datetime is refused: without an offset the same text means different instants per tool.
    """
    if _is_missing(raw):
        return None, None
    if isinstance(raw, datetime):
        if raw.tzinfo is None or raw.utcoffset() is None:
            return None, "datetime has no time zone"
        return raw, None
    if not isinstance(raw, str):
        return None, f"expected a datetime, got {type(raw).__name__}"
    moment, reason = _parse_datetime_text(raw.strip())
    if moment is None:
        return None, f"{reason}: {_short(raw)}"
    return moment, None


def _parse_datetime_text(text: str) -> tuple[datetime | None, str]:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None, "not an ISO datetime"
    if moment.tzinfo is None or moment.utcoffset() is None:
        return None, "datetime has no time zone"
    return moment, ""
