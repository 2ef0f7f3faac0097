"""The emulated GA4 property answers as Google's discovery document says (ga4-data-v1beta.json, ../shared/specs/),
and the official python client sends it what the captured requests in examples/ga4/ show.

The discovery document is not OpenAPI: its schemas have their own small language (type, format, properties,
additionalProperties, items, $ref by schema id, enum). DiscoveryValidator checks it strictly: a property the
schema does not define is an error, an int64 must be a decimal string (proto3 JSON), an int32 a JSON integer
in range, and a schema keyword it does not know fails the test rather than being ignored.

The python client asks for `$alt=json;enum-encoding=int`, so enums travel as numbers both ways. The discovery
document lists enums by name only; with `int_enums=True` the validator accepts a number when it is the proto
enum number of one of the listed names (numbers from the client library's own enum types).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, date, datetime
from functools import cache
from pathlib import Path
from typing import Any

import proto
import pytest
import requests
from google.analytics.data_v1beta import BetaAnalyticsDataClient
from google.analytics.data_v1beta import types as ga4_types
from google.api_core import exceptions as google_errors
from google.auth.credentials import AnonymousCredentials

from connectors.ga4 import GA4Connector, ReportSpec
from sandbox.common import ThreadedServer, serve
from sandbox.ga4 import PROPERTY_ID, GA4Property, create_app
from tests.specs import spec_path

SPEC = "ga4-data-v1beta.json"
INT_ENUMS = {"$alt": "json;enum-encoding=int"}
ANNOTATIONS = {"description", "id", "readOnly", "enumDescriptions", "deprecated", "enumDeprecated"}
KEYWORDS = ANNOTATIONS | {"type", "format", "properties", "additionalProperties", "items", "$ref", "enum"}
RPC_CODES = {"OK", "CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND", "ALREADY_EXISTS",
             "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION", "ABORTED", "OUT_OF_RANGE",
             "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS", "UNAUTHENTICATED"}


@cache
def discovery() -> dict[str, Any]:
    return json.loads(spec_path(SPEC).read_text())


def examples() -> Path:
    return spec_path(SPEC).parent / "examples" / "ga4"


@cache
def proto_enum_numbers() -> dict[frozenset[str], dict[int, str]]:
    """Every enum of the client library's types: its set of names -> {number: name}."""
    found: dict[frozenset[str], dict[int, str]] = {}

    def visit(holder: Any, depth: int = 0) -> None:
        for value in vars(holder).values():
            if isinstance(value, type) and issubclass(value, proto.Enum) and value is not proto.Enum:
                found[frozenset(member.name for member in value)] = {member.value: member.name for member in value}
            elif isinstance(value, type) and issubclass(value, proto.Message) and depth < 4:
                visit(value, depth + 1)

    visit(ga4_types)
    return found


class DiscoveryValidator:
    """Validates JSON values against a Google discovery document's schemas; errors are 'path: message'."""

    def __init__(self, document: dict[str, Any], *, int_enums: bool = False) -> None:
        self.schemas: dict[str, Any] = document["schemas"]
        self.int_enums = int_enums

    def errors(self, value: Any, schema_id: str) -> list[str]:
        found: list[str] = []
        self._check(value, {"$ref": schema_id}, "$", found)
        return found

    def _check(self, value: Any, schema: dict[str, Any], path: str, errors: list[str]) -> None:
        unknown = set(schema) - KEYWORDS
        if unknown:
            raise AssertionError(f"{path}: schema keywords {sorted(unknown)} are not understood by this validator")
        if "$ref" in schema:
            target = self.schemas.get(schema["$ref"])
            if target is None:
                errors.append(f"{path}: $ref {schema['$ref']!r} names no schema")
                return
            self._check(value, target, path, errors)
            return
        kind = schema.get("type")
        fmt = schema.get("format")
        if kind == "object":
            if not isinstance(value, dict):
                errors.append(f"{path}: expected an object, got {type(value).__name__}")
                return
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties")
            for name, item in value.items():
                if name in properties:
                    self._check(item, properties[name], f"{path}.{name}", errors)
                elif isinstance(extra, dict):
                    self._check(item, extra, f"{path}.{name}", errors)
                else:
                    errors.append(f"{path}: unknown property {name!r}")
        elif kind == "array":
            if not isinstance(value, list):
                errors.append(f"{path}: expected an array, got {type(value).__name__}")
                return
            for index, item in enumerate(value):
                self._check(item, schema["items"], f"{path}[{index}]", errors)
        elif kind == "string":
            if "enum" in schema:
                self._check_enum(value, schema["enum"], path, errors)
            elif not isinstance(value, str):
                errors.append(f"{path}: expected a string ({fmt or 'text'}), got {value!r}")
            elif fmt in ("int64", "uint64"):
                digits = value[1:] if fmt == "int64" and value.startswith("-") else value
                if not digits.isdigit():
                    errors.append(f"{path}: {fmt} {value!r} is not a decimal string")
            elif fmt not in (None, "google-datetime", "byte", "date", "date-time", "google-duration",
                             "google-fieldmask"):
                raise AssertionError(f"{path}: string format {fmt!r} is not understood by this validator")
        elif kind == "integer":
            if isinstance(value, bool) or not isinstance(value, int):
                errors.append(f"{path}: expected an integer ({fmt}), got {value!r}")
            elif fmt == "int32" and not -2**31 <= value < 2**31:
                errors.append(f"{path}: {value} is out of int32 range")
            elif fmt not in ("int32", "uint32"):
                raise AssertionError(f"{path}: integer format {fmt!r} is not understood by this validator")
        elif kind == "number":
            if isinstance(value, bool) or not isinstance(value, int | float):
                errors.append(f"{path}: expected a number ({fmt}), got {value!r}")
        elif kind == "boolean":
            if not isinstance(value, bool):
                errors.append(f"{path}: expected a boolean, got {value!r}")
        elif kind == "any":
            pass
        else:
            raise AssertionError(f"{path}: type {kind!r} is not understood by this validator")

    def _check_enum(self, value: Any, names: list[str], path: str, errors: list[str]) -> None:
        if isinstance(value, str):
            if value not in names:
                errors.append(f"{path}: {value!r} is not one of {names}")
            return
        if self.int_enums and isinstance(value, int) and not isinstance(value, bool):
            numbers = proto_enum_numbers().get(frozenset(names))
            if numbers is None:
                errors.append(f"{path}: no enum of the client library has the names {names}")
            elif value not in numbers:
                errors.append(f"{path}: {value} is not the number of any of {names}")
            return
        errors.append(f"{path}: expected an enum name of {names}, got {value!r}")


def assert_valid(value: Any, schema_id: str, *, int_enums: bool = False) -> None:
    errors = DiscoveryValidator(discovery(), int_enums=int_enums).errors(value, schema_id)
    assert not errors, "\n".join(errors[:10])


def method(name: str) -> dict[str, Any]:
    return discovery()["resources"]["properties"]["methods"][name]


def url_of(base: str, name: str) -> str:
    return f"{base}/" + method(name)["flatPath"].replace("{propertiesId}", PROPERTY_ID)


@pytest.fixture(scope="module")
def ga4() -> Iterator[tuple[str, GA4Property]]:
    prop = GA4Property()
    server = ThreadedServer(create_app(prop)).start()
    yield server.url, prop
    server.stop()


def report_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "dimensions": [{"name": "date"}, {"name": "landingPage"}],
        "metrics": [{"name": "eventCount"}, {"name": "engagementRate"}, {"name": "userEngagementDuration"}],
        "dateRanges": [{"startDate": "2026-11-20", "endDate": "today"}],
        "dimensionFilter": {"andGroup": {"expressions": [
            {"filter": {"fieldName": "eventName", "stringFilter": {"matchType": 1, "value": "session_start"}}},
            {"notExpression": {"filter": {"fieldName": "landingPage",
                                          "inListFilter": {"values": ["/stores"]}}}}]}},
        "orderBys": [{"dimension": {"dimensionName": "date", "orderType": 1}, "desc": True}],
        "limit": "25",
        "returnPropertyQuota": True,
    }
    body.update(overrides)
    return body


# -- the validator can fail ---------------------------------------------------------------------------


def test_the_validator_accepts_the_published_examples() -> None:
    assert_valid(json.loads((examples() / "runReport_response_with_propertyQuota.json").read_text()),
                 method("runReport")["response"]["$ref"])
    assert_valid(json.loads((examples() / "batchRunReports_response.json").read_text()),
                 method("batchRunReports")["response"]["$ref"])


@pytest.mark.parametrize(("value", "message"), [
    ({"rowCount": 3, "rows": [], "color": "red"}, "unknown property 'color'"),
    ({"rowCount": "3"}, "expected an integer"),
    ({"rowCount": 2**31}, "out of int32 range"),
    ({"metricHeaders": [{"name": "x", "type": "TYPE_BIG"}]}, "is not one of"),
    ({"metricHeaders": [{"name": "x", "type": 1}]}, "expected an enum name"),
    ({"rows": [{"metricValues": [{"value": 12}]}]}, "expected a string"),
    ({"rows": {"metricValues": []}}, "expected an array"),
    ({"propertyQuota": {"tokensPerDay": {"remaining": 5, "spent": 1}}}, "unknown property 'spent'"),
    ({"metadata": {"dataLossFromOtherRow": "no"}}, "expected a boolean"),
])
def test_the_validator_rejects_what_the_schema_does_not_allow(value: dict[str, Any], message: str) -> None:
    errors = DiscoveryValidator(discovery()).errors(value, "RunReportResponse")
    assert any(message in error for error in errors), errors


def test_int_enums_and_int64_strings_are_checked_too() -> None:
    strict = DiscoveryValidator(discovery(), int_enums=True)
    assert strict.errors({"metricHeaders": [{"name": "x", "type": 4}]}, "RunReportResponse") == []  # TYPE_SECONDS
    assert strict.errors({"metricHeaders": [{"name": "x", "type": 3}]}, "RunReportResponse") != []  # no such number
    assert strict.errors({"limit": "1000", "offset": "0"}, "RunReportRequest") == []
    assert any("int64" in e or "expected a string" in e
               for e in strict.errors({"limit": 1000}, "RunReportRequest"))
    assert strict.errors({"limit": "10x"}, "RunReportRequest") != []


# -- the sandbox's answers ------------------------------------------------------------------------------


@pytest.mark.parametrize("int_enums", [False, True], ids=["enum-names", "enum-encoding=int"])
def test_run_report_answers_follow_the_discovery_document(ga4, int_enums: bool) -> None:  # noqa: ANN001
    url, _ = ga4
    params = INT_ENUMS if int_enums else {"$alt": "json"}
    bodies = [report_body(), report_body(dimensions=[], orderBys=[]),  # one total row
              report_body(dateRanges=[{"startDate": "2024-01-01", "endDate": "2024-01-31"}]),  # no data: no rows
              report_body(offset="100", limit="10"), report_body(keepEmptyRows=True, returnPropertyQuota=False)]
    for body in bodies:
        response = requests.post(url_of(url, "runReport"), params=params, json=body, timeout=10)
        assert response.status_code == 200, response.text
        answer = response.json()
        assert_valid(answer, method("runReport")["response"]["$ref"], int_enums=int_enums)
        assert answer["kind"] == "analyticsData#runReport"
        if int_enums:
            assert {h["type"] for h in answer["metricHeaders"]} == {1, 2, 4}
        else:
            assert {h["type"] for h in answer["metricHeaders"]} == {"TYPE_INTEGER", "TYPE_FLOAT", "TYPE_SECONDS"}
    assert "rows" not in answer or answer["rows"]  # proto3 JSON leaves empty lists out


def test_a_paged_report_says_its_row_count(ga4) -> None:  # noqa: ANN001
    url, _ = ga4
    first = requests.post(url_of(url, "runReport"), params=INT_ENUMS, json=report_body(limit="10"), timeout=10).json()
    rest = requests.post(url_of(url, "runReport"), params=INT_ENUMS, json=report_body(offset="10", limit="1000"),
                         timeout=10).json()
    assert first["rowCount"] == rest["rowCount"] == 12 * 7  # 12 days (Nov 20 .. Dec 1) x 7 pages
    assert len(first["rows"]) == 10 and len(rest["rows"]) == 74
    days = [row["dimensionValues"][0]["value"] for row in first["rows"] + rest["rows"]]
    assert days == sorted(days, reverse=True)  # orderBys date desc


def test_batch_run_reports_answers_follow_the_discovery_document(ga4) -> None:  # noqa: ANN001
    url, _ = ga4
    body = {"requests": [report_body(property=f"properties/{PROPERTY_ID}"), report_body(limit="3"),
                         report_body(metrics=[{"name": "activeUsers"}], dimensions=[{"name": "pagePath"}],
                                     orderBys=[{"metric": {"metricName": "activeUsers"}, "desc": True}])]}
    response = requests.post(url_of(url, "batchRunReports"), params=INT_ENUMS, json=body, timeout=10)
    assert response.status_code == 200, response.text
    answer = response.json()
    assert_valid(answer, method("batchRunReports")["response"]["$ref"], int_enums=True)
    assert answer["kind"] == "analyticsData#batchRunReports"
    assert len(answer["reports"]) == 3
    assert all("propertyQuota" in report for report in answer["reports"])
    pages = answer["reports"][2]
    users = [int(row["metricValues"][0]["value"]) for row in pages["rows"]]
    assert users == sorted(users, reverse=True) and len(users) == 7  # /stores is filtered out


@pytest.mark.parametrize(("name", "body", "status", "says"), [
    ("batchRunReports", {"requests": [report_body()] * 6}, 400, "at most 5"),
    ("batchRunReports", {"requests": [report_body(property="properties/42")]}, 400, "one property"),
    ("runReport", report_body(metrics=[{"name": "leadz"}]), 400, "leadz is not a valid metric"),
    ("runReport", report_body(dimensions=[{"name": "campaign"}]), 400, "campaign is not a valid dimension"),
    ("runReport", report_body(pivots=[]), 400, 'Unknown name "pivots"'),
    ("runReport", report_body(metricFilter={"filter": {"fieldName": "eventCount"}}), 400, "not emulated"),
    ("runReport", report_body(dateRanges=[{"startDate": "2026-12-01", "endDate": "2026-11-01"}]), 400, "after"),
    ("runReport", report_body(dateRanges=["2026-11-01"]), 400, "Invalid JSON payload"),
    ("runReport", report_body(limit=10.5), 400, "not an int64"),
])
def test_refusals_are_google_error_envelopes(ga4, name: str, body: dict[str, Any], status: int,  # noqa: ANN001
                                              says: str) -> None:
    url, _ = ga4
    response = requests.post(url_of(url, name), params=INT_ENUMS, json=body, timeout=10)
    assert response.status_code == status, response.text
    check_error(response.json(), status, says)


def check_error(body: dict[str, Any], code: int, says: str) -> None:
    """Google's JSON error envelope: {"error": google.rpc.Status plus its code's name as "status"}. The discovery
    document has Status but not the envelope, so the envelope's "status" is checked here and the rest there."""
    assert set(body) == {"error"}
    error = dict(body["error"])
    assert error.pop("status") in RPC_CODES
    assert_valid(error, "Status")
    assert error["code"] == code
    assert says in error["message"]


def test_quota_refusals_and_auth_refusals_are_google_error_envelopes() -> None:
    moment = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)  # a fixed quota clock: the hour cannot roll mid-test
    prop = GA4Property(quota_clock=lambda: moment)
    prop.set_quota_budget(tokens_per_hour=1)
    with serve(create_app(prop)) as server:
        url = server.url
        ok = requests.post(url_of(url, "runReport"), params=INT_ENUMS, json=report_body(), timeout=10)
        assert ok.status_code == 200
        assert ok.json()["propertyQuota"]["tokensPerHour"] == {"consumed": 1}  # remaining 0 is left out
        spent = requests.post(url_of(url, "runReport"), params=INT_ENUMS, json=report_body(), timeout=10)
        assert spent.status_code == 429
        check_error(spent.json(), 429, "tokens per hour")
        assert spent.json()["error"]["status"] == "RESOURCE_EXHAUSTED"
        prop.token = "sandbox-ga4-token"
        anonymous = requests.post(url_of(url, "runReport"), params=INT_ENUMS, json=report_body(), timeout=10)
        check_error(anonymous.json(), 401, "credentials")
        prop.token = None
        foreign = requests.post(url_of(url, "runReport").replace(PROPERTY_ID, "42"), params=INT_ENUMS,
                                json=report_body(), timeout=10)
        check_error(foreign.json(), 403, "permissions")


# -- what the client sends --------------------------------------------------------------------------------


def client_for(url: str) -> BetaAnalyticsDataClient:
    return BetaAnalyticsDataClient(transport="rest", client_options={"api_endpoint": url},
                                   credentials=AnonymousCredentials())


def captured_report(*, with_property: bool) -> ga4_types.RunReportRequest:
    """The report of the captures in examples/ga4/, built with the client's types."""
    return ga4_types.RunReportRequest(
        property=f"properties/{PROPERTY_ID}" if with_property else "",
        dimensions=[ga4_types.Dimension(name="date")],
        metrics=[ga4_types.Metric(name="activeUsers")],
        date_ranges=[ga4_types.DateRange(start_date="7daysAgo", end_date="yesterday")],
        dimension_filter=ga4_types.FilterExpression(filter=ga4_types.Filter(
            field_name="country", string_filter=ga4_types.Filter.StringFilter(
                match_type=ga4_types.Filter.StringFilter.MatchType.EXACT, value="France"))),
        limit=1000,
        return_property_quota=True,
    )


def assert_sent_like_capture(sent: dict[str, Any], capture_file: str) -> None:
    capture = json.loads((examples() / capture_file).read_text())
    expected = json.loads(json.dumps(capture["body"]).replace("properties/123456", f"properties/{PROPERTY_ID}"))
    assert sent["body"] == expected
    assert f"{sent['path']}?{sent['query']}" == capture["path"].replace("/123456:", f"/{PROPERTY_ID}:")
    headers = {key.lower(): value for key, value in capture["headers"].items()}
    assert sent["headers"]["content-type"] == headers["content-type"]
    assert sent["headers"]["x-goog-request-params"] == headers["x-goog-request-params"].replace(
        "123456", PROPERTY_ID)
    client_versions = dict(part.split("/", 1) for part in sent["headers"]["x-goog-api-client"].split())
    captured_versions = dict(part.split("/", 1) for part in headers["x-goog-api-client"].split())
    assert client_versions["gapic"] == captured_versions["gapic"]  # the client version the capture was made with


def test_the_client_sends_run_report_as_captured(ga4) -> None:  # noqa: ANN001
    url, prop = ga4
    client = client_for(url)
    # the sandbox has no country dimension: the capture's report is refused, which is beside the point here
    with pytest.raises(google_errors.BadRequest, match="country is not a valid dimension"):
        client.run_report(request=captured_report(with_property=True), retry=None)
    assert_sent_like_capture(prop.requests[-1], "runReport_request_as_sent_by_python_client.json")
    assert_valid(prop.requests[-1]["body"], method("runReport")["request"]["$ref"], int_enums=True)
    # SOURCES.md: with enum-encoding=int the request fails a names-only enum check
    assert DiscoveryValidator(discovery()).errors(prop.requests[-1]["body"], "RunReportRequest")
    client.transport.close()


def test_the_client_sends_batch_run_reports_as_captured(ga4) -> None:  # noqa: ANN001
    url, prop = ga4
    client = client_for(url)
    with pytest.raises(google_errors.BadRequest):
        client.batch_run_reports(request=ga4_types.BatchRunReportsRequest(
            property=f"properties/{PROPERTY_ID}", requests=[captured_report(with_property=True)]), retry=None)
    assert_sent_like_capture(prop.requests[-1], "batchRunReports_request_as_sent_by_python_client.json")
    client.transport.close()


def test_what_the_connector_sends_follows_the_discovery_document(ga4) -> None:  # noqa: ANN001
    url, prop = ga4
    before = len(prop.requests)
    with GA4Connector(property_id=PROPERTY_ID, endpoint=url, anonymous=True, page_size=10) as connector:
        rows, = connector.run_reports([ReportSpec(
            metrics=("eventCount", "keyEvents"), start_date=date(2026, 11, 1), end_date=date(2026, 11, 15),
            filters=(("eventName", "generate_lead"), ("landingPage", "/newsletter")))])
    assert len(rows) == 15
    sent = prop.requests[before:]
    assert len(sent) == 2
    for request in sent:
        assert request["query"] == "%24alt=json%3Benum-encoding%3Dint"
        assert_valid(request["body"], method("batchRunReports")["request"]["$ref"], int_enums=True)
        assert all(isinstance(r["limit"], str) for r in request["body"]["requests"])
    assert sent[1]["body"]["requests"][0]["offset"] == "10"
