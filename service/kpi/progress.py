"""The objective arithmetic, as pure functions: milestone split of the target, expected value to date,
status against the thresholds, and the projection to the end of the window.

The model (documented in the README, "KPI objectives"):
- Milestones cut the window into calendar quarters or months, counted from the window's start.
- The target is an uplift over the baseline (+40 % = 0.40; an absolute target T becomes T / baseline - 1).
  Milestone k of n is given the uplift target * k / n (linear: +10/+20/+30/+40 % for +40 % by quarter) or
  (1 + target) ** (k / n) - 1 (compound), so the year-over-year growth reaches the target by the last one;
  or the target itself (even), so the window's total is the baseline's * (1 + target).
- Expected value of a stretch of days inside milestone k = the baseline over the same days (same calendar
  dates, whole years earlier) * (1 + uplift of k). A stretch over several milestones adds up its parts.
- status = on_track when actual / expected >= on_track, at_risk when >= at_risk, else off_track
  (expected / actual for a target that decreases the metric).
- projection = actual to date + expected over the remaining days (the rest of the window on plan).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Literal

from service.kpi.expression import MetricExpression

Daily = Mapping[date, Mapping[str, float]]  # day -> GA4 metric -> value
Split = Literal["linear", "compound", "even"]

ON_TRACK, AT_RISK, OFF_TRACK, NOT_STARTED = "on_track", "at_risk", "off_track", "not_started"


@dataclass(frozen=True)
class Milestone:
    index: int  # 1..n
    label: str  # "Q1", "M7"
    start: date
    end: date  # inclusive
    uplift: float  # 0.10 = +10 % over the baseline of the same days

    def days(self) -> list[date]:
        return days_between(self.start, self.end)


@dataclass(frozen=True)
class MilestoneProgress:
    milestone: Milestone
    actual: float  # over the milestone's days up to the date of the data
    expected_to_date: float
    expected_total: float  # over the whole milestone
    attainment: float | None  # actual / expected to date (inverted for a decrease); None before it starts
    status: str
    complete: bool


@dataclass(frozen=True)
class Progress:
    as_of: date  # the last day of data counted
    milestones: list[MilestoneProgress]
    current: MilestoneProgress  # the milestone the date falls in (the last once the window is over)
    actual: float  # the window to date
    expected_to_date: float
    attainment: float | None
    status: str
    expected_total: float  # the target for the whole window
    projection: float
    baseline_total: float


def days_between(start: date, end: date) -> list[date]:
    """Every day from start to end, both included."""
    return [start + timedelta(days=offset) for offset in range((end - start).days + 1)]


def add_months(day: date, months: int) -> date:
    """The same day of the month `months` later (clamped to the month's last day)."""
    month_index = day.month - 1 + months
    year, month = day.year + month_index // 12, month_index % 12 + 1
    for candidate in (day.day, 30, 29, 28):
        try:
            return date(year, month, min(day.day, candidate))
        except ValueError:
            continue
    raise AssertionError("unreachable")


def years_earlier(day: date, years: int) -> date:
    """The same calendar date `years` earlier; 29 February becomes the 28th."""
    try:
        return day.replace(year=day.year - years)
    except ValueError:
        return day.replace(year=day.year - years, day=28)


def milestone_periods(start: date, end: date, every: Literal["quarterly", "monthly"]) -> list[tuple[date, date]]:
    """Cuts the window into consecutive quarters or months counted from its start; the last may be shorter."""
    step = 3 if every == "quarterly" else 1
    periods = []
    cursor, k = start, 1
    while cursor <= end:
        nxt = add_months(start, step * k)  # counted from the start: 31 January, 30 April, 31 July... stay put
        periods.append((cursor, min(end, nxt - timedelta(days=1))))
        cursor, k = nxt, k + 1
    return periods


def milestone_uplifts(target: float, count: int, split: Split) -> list[float]:
    """The uplift each of `count` milestones must reach so that the last one reaches `target`."""
    if split == "linear":
        return [target * k / count for k in range(1, count + 1)]
    if split == "even":
        return [target] * count
    return [(1 + target) ** (k / count) - 1 for k in range(1, count + 1)]


def build_milestones(start: date, end: date, every: Literal["quarterly", "monthly"], target: float,
                     split: Split) -> list[Milestone]:
    periods = milestone_periods(start, end, every)
    uplifts = milestone_uplifts(target, len(periods), split)
    prefix = "Q" if every == "quarterly" else "M"
    return [Milestone(index=k, label=f"{prefix}{k}", start=s, end=e, uplift=u)
            for k, ((s, e), u) in enumerate(zip(periods, uplifts, strict=True), start=1)]


def status_for(attainment: float | None, *, on_track: float, at_risk: float) -> str:
    """Classifies an attainment ratio against the thresholds."""
    if attainment is None:
        return NOT_STARTED
    if attainment >= on_track:
        return ON_TRACK
    if attainment >= at_risk:
        return AT_RISK
    return OFF_TRACK


def relative_target(target: str | float, baseline_total: float) -> float:
    """Turns "+40%" into 0.40, and an absolute target for the window into its uplift over the baseline."""
    if isinstance(target, str):
        return float(target.strip()[:-1]) / 100
    if baseline_total <= 0:
        raise ValueError(f"an absolute target ({target:g}) needs a baseline above zero; the baseline adds up to "
                         f"{baseline_total:g} (no data for the baseline period?)")
    return float(target) / baseline_total - 1


@dataclass(frozen=True)
class Plan:
    """What the arithmetic needs to know about an objective."""

    start: date
    end: date
    expression: MetricExpression
    milestones: list[Milestone]
    on_track: float = 1.0
    at_risk: float = 0.9
    baseline_years_back: int | None = 1  # the baseline is the same dates this many years earlier
    baseline_value: float | None = None  # or: the baseline over a window-long period, as a number
    increase: bool = True  # False when the target lowers the metric (then lower is better)

    def window_days(self) -> list[date]:
        return days_between(self.start, self.end)


class Calculator:
    """Evaluates actual, baseline and expected values of a plan over stretches of days."""

    def __init__(self, plan: Plan, actual: Daily, baseline: Daily) -> None:
        self.plan = plan
        self.actual_daily = actual
        self.baseline_daily = baseline
        self.window_length = len(plan.window_days())

    @staticmethod
    def _sums(daily: Daily, days: Sequence[date]) -> dict[str, float]:
        sums: dict[str, float] = {}
        for day in days:  # a list, not a set: 28 February stands in for the 29th and counts twice
            for metric, value in (daily.get(day) or {}).items():
                sums[metric] = sums.get(metric, 0.0) + float(value)
        return sums

    def actual(self, days: Sequence[date]) -> float:
        return self.plan.expression.evaluate(self._sums(self.actual_daily, days))

    def baseline(self, days: Sequence[date]) -> float:
        if not days:
            return 0.0
        plan = self.plan
        if plan.baseline_value is not None:
            if plan.expression.additive:  # a total over a window-long period, spread evenly over its days
                return plan.baseline_value * len(days) / self.window_length
            return plan.baseline_value  # a rate is the same whatever the period
        years = plan.baseline_years_back or 1
        return plan.expression.evaluate(self._sums(self.baseline_daily, [years_earlier(d, years) for d in days]))

    def expected(self, days: Sequence[date]) -> float:
        parts = [(m, [d for d in days if m.start <= d <= m.end]) for m in self.plan.milestones]
        parts = [(m, part) for m, part in parts if part]
        if not parts:
            return 0.0
        if self.plan.expression.additive:
            return sum(self.baseline(part) * (1 + m.uplift) for m, part in parts)
        # A ratio does not add up: the baseline ratio of all the days, raised by the milestones' uplifts
        # weighted by the baseline of their part.
        weights = [(self.baseline(part), m.uplift) for m, part in parts]
        total = sum(weight for weight, _ in weights)
        mean_uplift = (sum(weight * uplift for weight, uplift in weights) / total if total
                       else sum(uplift for _, uplift in weights) / len(weights))
        return self.baseline(days) * (1 + mean_uplift)

    def attainment(self, actual: float, expected: float) -> float | None:
        if self.plan.increase:
            return actual / expected if expected else (1.0 if actual >= 0 else 0.0)
        return expected / actual if actual else (1.0 if expected >= 0 else 0.0)


def compute_progress(plan: Plan, actual: Daily, baseline: Daily, as_of: date) -> Progress:
    """Computes each milestone's and the window's progress with the data up to `as_of` (included)."""
    calc = Calculator(plan, actual, baseline)
    last = min(as_of, plan.end)
    to_date = days_between(plan.start, last) if last >= plan.start else []
    rows = []
    for milestone in plan.milestones:
        elapsed = [d for d in milestone.days() if d <= last]
        value = calc.actual(elapsed)
        expected = calc.baseline(elapsed) * (1 + milestone.uplift)
        attainment = calc.attainment(value, expected) if elapsed else None
        rows.append(MilestoneProgress(
            milestone=milestone, actual=value, expected_to_date=expected,
            expected_total=calc.baseline(milestone.days()) * (1 + milestone.uplift), attainment=attainment,
            status=status_for(attainment, on_track=plan.on_track, at_risk=plan.at_risk),
            complete=last >= milestone.end))
    current = next((row for row in rows if row.milestone.start <= last <= row.milestone.end), rows[-1])
    if last < plan.start:
        current = rows[0]
    actual_to_date = calc.actual(to_date)
    expected_to_date = calc.expected(to_date)
    attainment = calc.attainment(actual_to_date, expected_to_date) if to_date else None
    window = plan.window_days()
    remaining = [d for d in window if d > last]
    expected_remaining = calc.expected(remaining)
    if plan.expression.additive:
        projection = actual_to_date + expected_remaining
    else:  # a ratio: the days elapsed at their actual rate, the rest at the planned one
        projection = (actual_to_date * len(to_date) + expected_remaining * len(remaining)) / len(window)
    return Progress(
        as_of=last, milestones=rows, current=current, actual=actual_to_date, expected_to_date=expected_to_date,
        attainment=attainment, status=status_for(attainment, on_track=plan.on_track, at_risk=plan.at_risk),
        expected_total=calc.expected(window), projection=projection, baseline_total=calc.baseline(window))
