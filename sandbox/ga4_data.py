"""The emulated GA4 property's seeded data: daily series with a known answer for the email-lead objective, and
realistic traffic (trend, weekly seasonality, deterministic noise) for the other channels, events and pages.

The data is a cube of daily cells (date, sessionDefaultChannelGroup, eventName, page) -> summable metrics.
The page is exposed as both `landingPage` and `pagePath` (the sandbox does not tell a session's first page
from the page of each event). User- and session-scoped metrics (sessions, engagedSessions, activeUsers,
newUsers, userEngagementDuration) live on the session_start cells, so a report split by eventName shows them
under session_start only; without eventName they total as expected. activeUsers and newUsers add up across
days and pages here, where GA4 would count each user once per report.

The email-lead series (eventName = generate_lead, sessionDefaultChannelGroup = Email, eventCount), summed
over pages, is exactly:
- 2025: 40 + EMAIL_LEAD_WEEKLY[day.weekday()];
- 2026: round(value(same month and day of 2025) * EMAIL_LEAD_GROWTH[quarter]).
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from datetime import date, timedelta
from functools import cache

FIRST_DAY = date(2025, 1, 1)
LAST_DAY = date(2027, 12, 31)  # the clock may move past 2026; 2027 repeats 2026's email-lead values
SEED = 20250101

EMAIL_LEAD_BASE = 40
EMAIL_LEAD_WEEKLY = (6, 4, 2, 0, -2, -6, -4)  # Monday .. Sunday
EMAIL_LEAD_GROWTH = {1: 1.12, 2: 1.05, 3: 1.28, 4: 1.46}  # 2026 over 2025, by quarter

CHANNELS = ("Organic Search", "Direct", "Paid Search", "Email", "Organic Social", "Referral", "Paid Social")
EVENTS = ("page_view", "session_start", "form_start", "generate_lead")
PAGES = ("/", "/landing/spring-sale", "/blog/seo-checklist", "/newsletter", "/pricing", "/landing/webinar",
         "/blog/core-web-vitals", "/stores")

# Daily page views per channel at the start of 2025; the other events are ratios of page views.
PAGE_VIEWS = {"Organic Search": 1800, "Direct": 900, "Paid Search": 700, "Email": 300, "Organic Social": 400,
              "Referral": 200, "Paid Social": 350}
EVENT_RATIO = {"page_view": 1.0, "session_start": 0.35, "form_start": 0.03, "generate_lead": 0.012}
TREND_PER_YEAR = 0.25  # +25 % a year, linear
WEEKLY = (1.08, 1.10, 1.06, 1.04, 0.98, 0.84, 0.90)  # Monday .. Sunday
NOISE = 0.08  # +-8 %, uniform, from a fixed seed

# How each event spreads over pages (weights, not shares): leads come mostly from the landing pages.
PAGE_WEIGHTS = {
    "page_view": (30, 12, 14, 8, 10, 6, 12, 8),
    "session_start": (34, 14, 16, 6, 8, 6, 10, 6),
    "form_start": (6, 30, 4, 30, 10, 16, 2, 2),
    "generate_lead": (4, 34, 2, 36, 6, 16, 1, 1),
}

# Summable metrics held by every cell, in this order.
METRICS = ("eventCount", "keyEvents", "screenPageViews", "sessions", "engagedSessions", "activeUsers",
           "newUsers", "userEngagementDuration")
METRIC_INDEX = {name: index for index, name in enumerate(METRICS)}
KEY_EVENTS = frozenset({"generate_lead"})

Cell = tuple[int, int, int]  # (channel index, event index, page index)


def email_leads(day: date) -> int:
    """The seeded eventCount of generate_lead from Email on `day`, summed over pages (final value)."""
    if day.year == 2025:
        return EMAIL_LEAD_BASE + EMAIL_LEAD_WEEKLY[day.weekday()]
    quarter = (day.month - 1) // 3 + 1
    return round(email_leads(day.replace(year=2025)) * EMAIL_LEAD_GROWTH[quarter])


def split(total: int, weights: tuple[int, ...]) -> list[int]:
    """Splits an integer total over weights (largest remainder): the parts are integers adding up to total."""
    weight_sum = sum(weights)
    exact = [total * w / weight_sum for w in weights]
    parts = [int(x) for x in exact]
    order = sorted(range(len(weights)), key=lambda i: (-(exact[i] - parts[i]), i))
    for i in order[: total - sum(parts)]:
        parts[i] += 1
    return parts


def days() -> Iterator[date]:
    day = FIRST_DAY
    while day <= LAST_DAY:
        yield day
        day += timedelta(days=1)


@cache
def seeded_cube() -> dict[date, dict[Cell, tuple[int, ...]]]:
    """The final daily values of every cell (computed once per process; callers copy before changing)."""
    rng = random.Random(SEED)
    email = CHANNELS.index("Email")
    lead = EVENTS.index("generate_lead")
    session_start = EVENTS.index("session_start")
    cube: dict[date, dict[Cell, tuple[int, ...]]] = {}
    for day in days():
        trend = 1 + TREND_PER_YEAR * (day - FIRST_DAY).days / 365
        week = WEEKLY[day.weekday()]
        cells: dict[Cell, tuple[int, ...]] = {}
        for c, channel in enumerate(CHANNELS):
            engagement = 40 + 6 * c  # seconds of engagement per session, by channel
            for e, event in enumerate(EVENTS):
                noise = 1 + rng.uniform(-NOISE, NOISE)
                if c == email and e == lead:
                    total = email_leads(day if day.year < 2027 else day.replace(year=2026))
                else:
                    total = round(PAGE_VIEWS[channel] * EVENT_RATIO[event] * trend * week * noise)
                for p, count in enumerate(split(total, PAGE_WEIGHTS[event])):
                    sessions = count if e == session_start else 0
                    cells[(c, e, p)] = (
                        count,  # eventCount
                        count if event in KEY_EVENTS else 0,  # keyEvents
                        count if event == "page_view" else 0,  # screenPageViews
                        sessions,
                        round(sessions * 0.62),  # engagedSessions
                        round(sessions * 0.78),  # activeUsers
                        round(sessions * 0.41),  # newUsers
                        sessions * engagement,  # userEngagementDuration, seconds
                    )
        cube[day] = cells
    return cube
