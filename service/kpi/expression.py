"""GA4 metric expressions of objectives ("eventCount", "engagedSessions / sessions"): parsing, the names
GA4 knows, and evaluation over summed daily values."""

from __future__ import annotations

import ast
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

# GA4 Data API metrics that add up day by day (a period's value is the sum of its days). Rates and averages
# (bounceRate, engagementRate, averageSessionDuration, ...) do not: write them as an expression of summable
# metrics instead, e.g. "engagedSessions / sessions" for the engagement rate.
SUMMABLE_METRICS = frozenset({
    "activeUsers", "newUsers", "totalUsers", "active1DayUsers", "sessions", "engagedSessions", "eventCount",
    "keyEvents", "conversions", "screenPageViews", "userEngagementDuration", "purchaseRevenue", "totalRevenue",
    "grossPurchaseRevenue", "transactions", "ecommercePurchases", "addToCarts", "checkouts", "itemsViewed",
    "itemsPurchased", "itemRevenue", "adRevenue", "publisherAdClicks", "publisherAdImpressions",
    "advertiserAdClicks", "advertiserAdCost", "advertiserAdImpressions", "firstTimePurchasers",
    "totalPurchasers", "scrolledUsers", "organicGoogleSearchClicks", "organicGoogleSearchImpressions",
})
RATE_METRICS = frozenset({
    "bounceRate", "engagementRate", "averageSessionDuration", "sessionsPerUser", "screenPageViewsPerSession",
    "screenPageViewsPerUser", "eventsPerSession", "eventCountPerUser", "userKeyEventRate", "sessionKeyEventRate",
    "averagePurchaseRevenue", "averageRevenuePerUser", "purchaseToViewRate", "cartToViewRate", "dauPerMau",
    "dauPerWau", "wauPerMau", "userEngagementDurationPerUser", "averageEngagementTime",
})
DIMENSIONS = frozenset({
    "date", "eventName", "sessionDefaultChannelGroup", "firstUserDefaultChannelGroup", "defaultChannelGroup",
    "sessionSource", "sessionMedium", "sessionSourceMedium", "sessionCampaignName", "sessionCampaignId",
    "firstUserSource", "firstUserMedium", "firstUserCampaignName", "landingPage", "landingPagePlusQueryString",
    "pagePath", "pagePathPlusQueryString", "pageTitle", "pageLocation", "hostName", "country", "region", "city",
    "language", "deviceCategory", "operatingSystem", "browser", "platform", "streamId", "streamName",
    "newVsReturning", "audienceName", "isKeyEvent", "linkUrl", "fileName", "contentGroup", "contentType",
    "itemName", "itemCategory", "transactionId",
})
CUSTOM_DIMENSION = re.compile(r"^custom(Event|User|Item):[A-Za-z_][A-Za-z0-9_]*$")
CUSTOM_METRIC = re.compile(r"^customEvent:[A-Za-z_][A-Za-z0-9_]*$")
_CUSTOM_NAME = re.compile(r"customEvent:([A-Za-z_][A-Za-z0-9_]*)")
_PLACEHOLDER = "__custom_"


STORED_FILTER_LENGTH = 500  # kpi_snapshots.filters and kpi_coverage.filters are VARCHAR(500)
STORED_METRICS_LENGTH = 500  # kpi_coverage.metrics (the expression's metrics, comma-separated) too


def filters_json(filters: Iterable[tuple[str, str]]) -> str:
    """The canonical JSON of a dimension filter, as stored with each snapshot: sorted [dimension, value] pairs."""
    return json.dumps([list(pair) for pair in sorted(filters)], separators=(",", ":"), ensure_ascii=False)


def check_dimension(name: str) -> None:
    """Raises ValueError unless `name` is a GA4 dimension (or a custom one, customEvent:x)."""
    if name not in DIMENSIONS and not CUSTOM_DIMENSION.match(name):
        raise ValueError(f"{name!r} is not a GA4 dimension this service knows (e.g. eventName, "
                         "sessionDefaultChannelGroup, landingPage, pagePath, or customEvent:<parameter>)")


def check_summable_metric(name: str) -> None:
    """Raises ValueError unless `name` is a GA4 metric whose daily values add up."""
    if name in RATE_METRICS:
        raise ValueError(f"{name!r} is a rate or an average, which does not add up day by day; write it as an "
                         "expression of summable metrics (e.g. 'engagedSessions / sessions')")
    if name not in SUMMABLE_METRICS and not CUSTOM_METRIC.match(name):
        raise ValueError(f"{name!r} is not a GA4 metric this service knows (e.g. eventCount, keyEvents, sessions, "
                         "activeUsers, or customEvent:<parameter>)")


@dataclass(frozen=True)
class MetricExpression:
    """A GA4 metric or an arithmetic expression of metrics (+ - * / and numbers), e.g. 'keyEvents / sessions'."""

    text: str
    metrics: tuple[str, ...]  # the GA4 metrics it reads, sorted
    additive: bool  # a sum of metrics (times constants): a period's value is the sum of its daily values
    _tree: ast.expr

    @classmethod
    def parse(cls, text: str) -> MetricExpression:
        """Parses and checks an expression; raises ValueError saying what is wrong."""
        source = text.strip()
        if not source:
            raise ValueError("the metric is empty")
        customs: dict[str, str] = {}

        def hide(match: re.Match[str]) -> str:  # "customEvent:x" is not a Python name: stand it in
            name = f"{_PLACEHOLDER}{len(customs)}"
            customs[name] = match.group(0)
            return name

        try:
            tree = ast.parse(_CUSTOM_NAME.sub(hide, source), mode="eval").body
        except SyntaxError:
            raise ValueError(f"{text!r} is not a metric name or an expression of metrics (+ - * / and numbers)"
                             ) from None
        names: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Name):
                node.id = customs.get(node.id, node.id)
                names.add(node.id)
            elif isinstance(node, ast.Constant):
                if not isinstance(node.value, int | float) or isinstance(node.value, bool):
                    raise ValueError(f"{text!r}: only numbers may appear besides metric names")
            elif not isinstance(node, ast.BinOp | ast.UnaryOp | ast.Add | ast.Sub | ast.Mult | ast.Div
                                | ast.USub | ast.UAdd | ast.Load):
                raise ValueError(f"{text!r}: only metric names, numbers and + - * / ( ) are allowed")
        if not names:
            raise ValueError(f"{text!r} names no GA4 metric")
        for name in sorted(names):
            check_summable_metric(name)
        return cls(text=source, metrics=tuple(sorted(names)), additive=_is_linear(tree), _tree=tree)

    def evaluate(self, sums: Mapping[str, float]) -> float:
        """Evaluates the expression on the metrics' sums over a period; a division by zero gives 0."""
        return _evaluate(self._tree, sums)


def _is_linear(node: ast.expr) -> bool:
    """A sum of metrics times constants (so summing daily values equals evaluating the summed metrics)."""
    if isinstance(node, ast.Name | ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp):
        return _is_linear(node.operand)
    if isinstance(node, ast.BinOp):
        if isinstance(node.op, ast.Add | ast.Sub):
            return _is_linear(node.left) and _is_linear(node.right)
        if isinstance(node.op, ast.Mult):
            return (_constant(node.left) and _is_linear(node.right)) or (_constant(node.right)
                                                                        and _is_linear(node.left))
        if isinstance(node.op, ast.Div):
            return _constant(node.right) and _is_linear(node.left)
    return False


def _constant(node: ast.expr) -> bool:
    return not any(isinstance(child, ast.Name) for child in ast.walk(node))


def _evaluate(node: ast.expr, sums: Mapping[str, float]) -> float:
    if isinstance(node, ast.Name):
        return float(sums.get(node.id, 0.0))
    if isinstance(node, ast.Constant):
        return float(node.value)
    if isinstance(node, ast.UnaryOp):
        value = _evaluate(node.operand, sums)
        return -value if isinstance(node.op, ast.USub) else value
    assert isinstance(node, ast.BinOp)
    left, right = _evaluate(node.left, sums), _evaluate(node.right, sums)
    if isinstance(node.op, ast.Add):
        return left + right
    if isinstance(node.op, ast.Sub):
        return left - right
    if isinstance(node.op, ast.Mult):
        return left * right
    return left / right if right else 0.0
