"""Priority scores (RICE, ICE, value vs effort, WSJF) and the deterministic ranking of backlog items.

Pure functions over the model: no I/O, no database. Each method returns its score (or None) and the
problems that prevented or qualify it, each naming the input ("missing input: reach").

Scales, as the methods define them:
- RICE = reach x impact x (confidence / 100) / effort; impact on 0.25 / 0.5 / 1 / 2 / 3, confidence a
  percent on 0..100, effort > 0 (person-weeks), reach >= 0.
- ICE = impact x (confidence / 10) x ease; impact and ease on 1..10. Confidence is stored as a percent for
  every method, so ICE divides it by 10 to put it on the same 0..10 scale as the others (80 % -> 8).
- Value vs effort = value / effort, plus a quadrant: value >= value_threshold is high value, effort >=
  effort_threshold is high effort (both default to 5 on a 1..10 scale; the config can change them).
- WSJF = (value + time criticality + risk reduction) / effort (the job size).

Ranking (`rank`): ranks 1..n go to the scored items, best first. Ties on the score (compared rounded to 2
decimals, as shown to users) break by: higher confidence (RICE only), earlier due date (none last), older
creation time (none last), then the item's key or id ascending in natural order ("MKT-9" before "MKT-10").
Items without a score get rank None and come after the ranked ones, ordered by key or id.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from itertools import groupby
from operator import itemgetter
from typing import Any

from mappings.model import BacklogItem, Method, Problem, Quadrant, ScoringInputs

RICE_IMPACTS = (0.25, 0.5, 1.0, 2.0, 3.0)
DEFAULT_VALUE_THRESHOLD = 5.0
DEFAULT_EFFORT_THRESHOLD = 5.0
_KNOWN_PARAMS = {"value_threshold", "effort_threshold"}


@dataclass(frozen=True)
class ScoredItem:
    """One item's score under one method, its rank among its peers, and why it has no score if so."""

    external_id: str
    score: float | None  # rounded to 2 decimals
    method: Method
    rank: int | None = None
    quadrant: Quadrant | None = None
    problems: tuple[Problem, ...] = ()


class _Checks:
    """Collects input problems; each check returns the value when it is usable, else None."""

    def __init__(self, inputs: ScoringInputs) -> None:
        self.inputs = inputs
        self.problems: list[Problem] = []

    def _get(self, name: str) -> float | None:
        value = getattr(self.inputs, name, None)
        if value is None:
            self.problems.append(Problem(field=name, reason=f"missing input: {name}"))
            return None
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            reason = f"{name} is not a finite number"
            self.problems.append(Problem(field=name, reason=reason, value=str(value)[:200]))
            return None
        return float(value)

    def _refuse(self, name: str, reason: str, value: float) -> None:
        self.problems.append(Problem(field=name, reason=reason, value=f"{value:g}"))

    def at_least_zero(self, name: str) -> float | None:
        value = self._get(name)
        if value is not None and value < 0:
            self._refuse(name, f"{name} must be 0 or more", value)
            return None
        return value

    def positive(self, name: str) -> float | None:
        value = self._get(name)
        if value is not None and value <= 0:
            self._refuse(name, f"{name} must be greater than 0", value)
            return None
        return value

    def between(self, name: str, low: float, high: float) -> float | None:
        value = self._get(name)
        if value is not None and not low <= value <= high:
            self._refuse(name, f"{name} must be between {low:g} and {high:g}", value)
            return None
        return value

    def rice_impact(self) -> float | None:
        value = self._get("impact")
        # Most values are exactly one of the scale's: the membership test spares the closeness loop.
        if value is not None and value not in RICE_IMPACTS and not any(
                math.isclose(value, allowed) for allowed in RICE_IMPACTS):
            self._refuse("impact", "impact must be one of 0.25, 0.5, 1, 2, 3", value)
            return None
        return value


def _finish(score: float) -> tuple[float | None, list[Problem]]:
    if not math.isfinite(score):
        # Each input is finite but the product overflowed: say so rather than rank an infinity.
        return None, [Problem(field="score", reason="score is not finite (inputs out of range)")]
    return score, []


def rice_score(inputs: ScoringInputs) -> tuple[float | None, list[Problem]]:
    """Computes RICE = reach x impact x (confidence / 100) / effort."""
    checks = _Checks(inputs)
    reach = checks.at_least_zero("reach")
    impact = checks.rice_impact()
    confidence = checks.between("confidence", 0, 100)
    effort = checks.positive("effort")
    if reach is None or impact is None or confidence is None or effort is None:
        return None, checks.problems
    return _finish(reach * impact * (confidence / 100) / effort)


def ice_score(inputs: ScoringInputs) -> tuple[float | None, list[Problem]]:
    """Computes ICE = impact x (confidence / 10) x ease, each on 1..10 (confidence given in percent)."""
    checks = _Checks(inputs)
    impact = checks.between("impact", 1, 10)
    confidence = checks.between("confidence", 0, 100)
    ease = checks.between("ease", 1, 10)
    if impact is None or confidence is None or ease is None:
        return None, checks.problems
    return _finish(impact * (confidence / 10) * ease)


def value_effort(
    inputs: ScoringInputs,
    *,
    value_threshold: float = DEFAULT_VALUE_THRESHOLD,
    effort_threshold: float = DEFAULT_EFFORT_THRESHOLD,
) -> tuple[float | None, Quadrant | None, list[Problem]]:
    """Computes value / effort and its quadrant (values at or above the thresholds count as high)."""
    checks = _Checks(inputs)
    value = checks.at_least_zero("value")
    effort = checks.positive("effort")
    if value is None or effort is None:
        return None, None, checks.problems
    high_value = value >= value_threshold
    high_effort = effort >= effort_threshold
    if high_value:
        quadrant = Quadrant.BIG_BET if high_effort else Quadrant.QUICK_WIN
    else:
        quadrant = Quadrant.TIME_SINK if high_effort else Quadrant.FILL_IN
    score, problems = _finish(value / effort)
    return score, quadrant, problems


def wsjf_score(inputs: ScoringInputs) -> tuple[float | None, list[Problem]]:
    """Computes WSJF = (value + time criticality + risk reduction) / effort (job size)."""
    checks = _Checks(inputs)
    value = checks.at_least_zero("value")
    time_criticality = checks.at_least_zero("time_criticality")
    risk_reduction = checks.at_least_zero("risk_reduction")
    effort = checks.positive("effort")
    if value is None or time_criticality is None or risk_reduction is None or effort is None:
        return None, checks.problems
    return _finish((value + time_criticality + risk_reduction) / effort)


def score_item(item: BacklogItem, method: Method | str, **params: Any) -> ScoredItem:
    """Scores one item with one method; the quadrant is filled whenever value and effort allow it."""
    method = Method(method)
    unknown = set(params) - _KNOWN_PARAMS
    if unknown:
        raise TypeError(f"unknown scoring parameter(s): {', '.join(sorted(unknown))}")
    thresholds = {name: float(params[name]) for name in _KNOWN_PARAMS if name in params}
    score_value, quadrant, quadrant_problems = value_effort(item.inputs, **thresholds)
    if method is Method.VALUE_EFFORT:
        score, problems = score_value, quadrant_problems
    elif method is Method.RICE:
        score, problems = rice_score(item.inputs)
    elif method is Method.ICE:
        score, problems = ice_score(item.inputs)
    else:
        score, problems = wsjf_score(item.inputs)
    return ScoredItem(
        external_id=item.external_id,
        score=None if score is None else round(score, 2),
        method=method,
        quadrant=quadrant,
        problems=tuple(problems),
    )


def score_items(items: Iterable[BacklogItem], method: Method | str, **params: Any) -> list[ScoredItem]:
    """Scores and ranks items with one method; ranked items first (1..k), then the unscored ones."""
    return rank([(item, score_item(item, method, **params)) for item in items])


def rank(scored: Iterable[tuple[BacklogItem, ScoredItem]]) -> list[ScoredItem]:
    """Assigns ranks 1..k to the scored items by the documented tie-breaks; unscored items get rank None."""
    pairs = list(scored)
    ranked = _sorted_by_rank_key([pair for pair in pairs if pair[1].score is not None])
    unranked = sorted((pair for pair in pairs if pair[1].score is None), key=lambda pair: _identity(pair[0]))
    result = [_with_rank(entry, position) for position, (_, entry) in enumerate(ranked, start=1)]
    result.extend(_with_rank(entry, None) for _, entry in unranked)
    return result


def _with_rank(entry: ScoredItem, position: int | None) -> ScoredItem:
    return ScoredItem(
        external_id=entry.external_id,
        score=entry.score,
        method=entry.method,
        rank=position,
        quadrant=entry.quadrant,
        problems=entry.problems,
    )


def _sorted_by_rank_key(pairs: list[tuple[BacklogItem, ScoredItem]]) -> list[tuple[BacklogItem, ScoredItem]]:
    """Sorts by `_rank_key`, then by `_identity` within the runs that tie on it: the same order as one sort by
    both, but the natural-order key (the dearest part) is computed only for the items that need it."""
    keyed = sorted(((_rank_key(pair), pair) for pair in pairs), key=itemgetter(0))
    result: list[tuple[BacklogItem, ScoredItem]] = []
    for _, run in groupby(keyed, key=itemgetter(0)):
        tied = [pair for _, pair in run]
        # A stable sort, as the one sort by the whole key was; a run of one needs no key.
        result.extend(tied if len(tied) == 1 else sorted(tied, key=lambda pair: _identity(pair[0])))
    return result


def _rank_key(pair: tuple[BacklogItem, ScoredItem]) -> tuple[Any, ...]:
    """The ranking's tie-breaks up to, not including, the item's key or id (`_identity`)."""
    item, entry = pair
    confidence = item.inputs.confidence if entry.method is Method.RICE else None
    if confidence is not None and not math.isfinite(confidence):
        confidence = None
    return (
        -(entry.score or 0.0),
        (confidence is None, -(confidence or 0.0)),
        _last_if_none(item.due_date),
        _last_if_none(_instant(item.created_at)),
    )


def _last_if_none(value: date | float | None) -> tuple[bool, Any]:
    return (value is None, value if value is not None else 0)


def _instant(moment: datetime | None) -> float | None:
    # A naive datetime is read as UTC so mixed sources never make the comparison raise.
    if moment is None:
        return None
    return (moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)).timestamp()


def _identity(item: BacklogItem) -> tuple[Any, ...]:
    return (_natural(item.key or item.external_id), _natural(item.external_id), item.source)


_DIGIT_RUNS = re.compile(r"(\d+)")


def _natural(text: str) -> list[Any]:
    """Splits "MKT-10" into ["mkt-", (2, "10"), ""] so digit runs compare as numbers (without int limits)."""
    parts = _DIGIT_RUNS.split(text.casefold())
    return [
        (len(part.lstrip("0")), part.lstrip("0")) if index % 2 else part for index, part in enumerate(parts)
    ]
