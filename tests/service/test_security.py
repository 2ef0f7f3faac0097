"""Security of the daemon's HTTP face: every admin route needs the token, a placeholder token is refused,
webhooks are verified (signature or path token) and size-limited before anything is stored, secrets never
reach a log line or a response, and a schema-driven fuzz of /api finds no server error."""

from __future__ import annotations

import base64
import contextlib
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
import schemathesis
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, settings
from sqlalchemy import select
from sqlalchemy.engine import Engine

from connectors.jira_webhooks import sign
from sandbox.common import ThreadedServer
from sandbox.jira import DEFAULT_EMAIL, JiraSite
from sandbox.jira import create_app as create_jira
from service.api import create_app
from service.config import AppConfig, ConfigError, Settings
from service.db import make_engine, session_scope
from service.logs import JsonFormatter
from service.tables import InboxRow
from service.webhooks import jira_path_token
from tests.specs import JIRA_EXAMPLES

ADMIN_TOKEN = "admin-token-of-the-security-tests-9f3c2a71"
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
JIRA_TOKEN = "jira-api-token-of-the-security-tests-5d81e0"
WEBHOOK_SECRET = "jira-webhook-secret-of-the-security-tests-b27c"
SOURCE = "mkt"
CAPTURE = JIRA_EXAMPLES / "webhook_jira_issue_updated_status.json"


@dataclass
class Jira:
    site: JiraSite
    app: FastAPI
    url: str


@pytest.fixture
def jira(monkeypatch: pytest.MonkeyPatch) -> Iterator[Jira]:
    monkeypatch.setenv("SEC_JIRA_TOKEN", JIRA_TOKEN)
    monkeypatch.setenv("SEC_JIRA_WEBHOOK_SECRET", WEBHOOK_SECRET)
    site = JiraSite()
    site.api_token = JIRA_TOKEN  # a value of our own, so finding it anywhere means it leaked
    app = create_jira(site)
    server = ThreadedServer(app)
    site.base_url = server.url
    server.start()
    yield Jira(site=site, app=app, url=server.url)
    server.stop()


def make_app(engine: Engine, jira_url: str, *, signed: bool = True, start_scheduler: bool = False,
             max_body: int = 1_000_000, **extra: Any) -> FastAPI:
    source: dict[str, Any] = {
        "name": SOURCE, "kind": "jira", "base_url": jira_url, "jql": "project = MKT",
        "auth": {"email": DEFAULT_EMAIL, "token": {"env": "SEC_JIRA_TOKEN"}},
        "schedule": {"enabled": False},
    }
    if signed:
        source["webhook_secret"] = {"env": "SEC_JIRA_WEBHOOK_SECRET"}
    config = AppConfig.model_validate({"sources": [source], **extra})
    settings_ = Settings(admin_token=ADMIN_TOKEN, database_url=str(engine.url), backlog_sync_env="production",
                         max_webhook_body_bytes=max_body)
    return create_app(settings=settings_, config=config, engine=engine, start_scheduler=start_scheduler)


def inbox_rows(engine: Engine) -> list[InboxRow]:
    with session_scope(engine) as db:
        return list(db.execute(select(InboxRow).order_by(InboxRow.id)).scalars())


def api_operations(app: FastAPI) -> list[tuple[str, str]]:
    """Every (method, path) under /api in the app's OpenAPI, path parameters filled with dummy values."""
    operations = []
    for path, methods in app.openapi()["paths"].items():
        if not path.startswith("/api"):
            continue
        for method in methods:
            if method in ("get", "post", "put", "patch", "delete"):
                operations.append((method.upper(), re.sub(r"\{[^}/]+\}", "dummy-value", path)))
    return operations


# --- (1) every admin route needs the token ------------------------------------------------------------

WRONG_CREDENTIALS: list[dict[str, str]] = [
    {},
    {"Authorization": "Bearer wrong-token-that-is-long-enough"},
    {"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"},
    {"Authorization": f"Bearer {ADMIN_TOKEN}x"},
    {"Authorization": "Bearer "},
    {"Authorization": ADMIN_TOKEN},  # no scheme
    {"Authorization": f"Token {ADMIN_TOKEN}"},
    {"Authorization": "Basic " + base64.b64encode(f"admin:{ADMIN_TOKEN}".encode()).decode()},
    {"X-Admin-Token": ADMIN_TOKEN},
]


def test_every_admin_route_refuses_a_missing_or_wrong_token(sqlite_engine: Engine, jira: Jira) -> None:
    app = make_app(sqlite_engine, jira.url)
    operations = api_operations(app)
    assert {("GET", "/api/items"), ("GET", "/api/items/dummy-value/dummy-value"), ("GET", "/api/sources"),
            ("POST", "/api/sources/dummy-value/sync"), ("GET", "/api/runs")} <= set(operations)
    with TestClient(app) as client:
        for method, path in operations:
            for headers in WRONG_CREDENTIALS:
                response = client.request(method, path, headers=headers)
                assert response.status_code == 401, (method, path, headers, response.text)
                assert response.headers["www-authenticate"] == "Bearer"
                assert ADMIN_TOKEN not in response.text
            # A token in the query string is not a credential either.
            assert client.request(method, path, params={"token": ADMIN_TOKEN}).status_code == 401
        # The same requests with the token get past the check (so the 401s above were the token's doing).
        assert client.get("/api/items", headers=AUTH).status_code == 200
        assert client.get("/api/items", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}).status_code == 200
        assert client.get("/api/items/dummy-value/dummy-value", headers=AUTH).status_code == 404
        assert client.post("/api/sources/dummy-value/sync", headers=AUTH).status_code == 404


# --- (2) no placeholder admin token ----------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "", "changeme", "CHANGEME", "change-me", "too-short-token"])
def test_a_missing_or_placeholder_admin_token_stops_the_app(sqlite_engine: Engine, token: str | None) -> None:
    config = AppConfig.model_validate({"sources": []})
    with pytest.raises(ConfigError, match="ADMIN_TOKEN"):
        create_app(settings=Settings(admin_token=token, backlog_sync_env="production"), config=config,
                   engine=sqlite_engine, start_scheduler=False)


def test_the_admin_token_from_the_environment_is_checked_too(sqlite_engine: Engine,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("BACKLOG_SYNC_ENV", raising=False)
    config = AppConfig.model_validate({"sources": []})
    monkeypatch.setenv("ADMIN_TOKEN", "changeme")
    with pytest.raises(ConfigError):
        create_app(settings=Settings(), config=config, engine=sqlite_engine, start_scheduler=False)
    monkeypatch.delenv("ADMIN_TOKEN")
    with pytest.raises(ConfigError):
        create_app(settings=Settings(), config=config, engine=sqlite_engine, start_scheduler=False)
    monkeypatch.setenv("ADMIN_TOKEN", ADMIN_TOKEN)
    assert create_app(settings=Settings(), config=config, engine=sqlite_engine,
                      start_scheduler=False).state.admin_token == ADMIN_TOKEN


# --- (3) signed Jira webhooks ----------------------------------------------------------------------------


def test_a_signed_webhook_is_stored_once_and_a_bad_signature_stores_nothing(engine: Engine, jira: Jira) -> None:
    body = CAPTURE.read_bytes()
    url = f"/webhooks/jira/{SOURCE}"
    json_type = {"Content-Type": "application/json"}
    with TestClient(make_app(engine, jira.url)) as client:
        refused = [
            client.post(url, content=body, headers=json_type),
            client.post(url, content=body, headers={**json_type, "X-Hub-Signature": sign("not-the-secret", body)}),
            client.post(url, content=body, headers={**json_type, "X-Hub-Signature": "sha256=" + "0" * 64}),
            client.post(url, content=body, headers={**json_type, "X-Hub-Signature": sign(WEBHOOK_SECRET, b"{}")}),
            client.post(url, content=body, headers={
                **json_type, "X-Hub-Signature": sign(WEBHOOK_SECRET, body).replace("sha256=", "sha1=")}),
        ]
        for response in refused:
            assert response.status_code == 401, response.text
            assert WEBHOOK_SECRET not in response.text
        assert inbox_rows(engine) == []

        signed = {**json_type, "X-Hub-Signature": sign(WEBHOOK_SECRET, body)}
        first = client.post(url, content=body, headers=signed)
        assert first.status_code == 200 and first.json() == {"stored": True}
        [row] = inbox_rows(engine)
        assert row.source == SOURCE and row.status == "pending" and json.loads(row.body) == json.loads(body)

        again = client.post(url, content=body, headers=signed)
        assert again.status_code == 200 and again.json() == {"stored": False}
        assert len(inbox_rows(engine)) == 1, "a redelivery is stored (and so processed) once"


# --- (4) unsigned Jira webhooks need the path token -------------------------------------------------------


def test_without_a_secret_a_jira_webhook_needs_the_path_token(engine: Engine, jira: Jira) -> None:
    body = CAPTURE.read_bytes()
    token = jira_path_token(ADMIN_TOKEN, SOURCE)
    assert len(token) == 40 and ADMIN_TOKEN not in token
    json_type = {"Content-Type": "application/json"}
    with TestClient(make_app(engine, jira.url, signed=False)) as client:
        wrong = [
            f"/webhooks/jira/{SOURCE}",  # no token at all
            f"/webhooks/jira/{SOURCE}/{token[:-1]}x",
            f"/webhooks/jira/{SOURCE}/{jira_path_token(ADMIN_TOKEN, 'another-source')}",
            f"/webhooks/jira/{SOURCE}/{jira_path_token('a-different-admin-token-1234', SOURCE)}",
            f"/webhooks/jira/{SOURCE}/{ADMIN_TOKEN}",
        ]
        for url in wrong:
            # Even a correct signature does not replace the path token when the source has no secret.
            response = client.post(url, content=body, headers={**json_type,
                                                               "X-Hub-Signature": sign(WEBHOOK_SECRET, body)})
            assert response.status_code == 401, url
        assert inbox_rows(engine) == []

        accepted = client.post(f"/webhooks/jira/{SOURCE}/{token}", content=body, headers=json_type)
        assert accepted.status_code == 200 and accepted.json() == {"stored": True}
        assert len(inbox_rows(engine)) == 1


# --- (5) oversized bodies ------------------------------------------------------------------------------------


def test_a_body_over_the_limit_is_refused_before_it_is_stored(engine: Engine, jira: Jira) -> None:
    body = CAPTURE.read_bytes()
    limit = len(body)  # the capture fits exactly; one byte more does not
    padded = body.rstrip()[:-1] + b', "padding": "' + b"x" * 64 + b'"}'
    assert len(padded) > limit and json.loads(padded)["padding"]
    url = f"/webhooks/jira/{SOURCE}"
    with TestClient(make_app(engine, jira.url, max_body=limit)) as client:
        too_big = client.post(url, content=padded, headers={"Content-Type": "application/json",
                                                            "X-Hub-Signature": sign(WEBHOOK_SECRET, padded)})
        assert too_big.status_code == 413 and str(limit) in too_big.json()["detail"]

        # Without a Content-Length (chunked), the stream is cut as soon as it passes the limit.
        def chunks() -> Iterator[bytes]:
            for start in range(0, len(padded), 1000):
                yield padded[start:start + 1000]

        streamed = client.post(url, content=chunks(), headers={"Content-Type": "application/json",
                                                               "X-Hub-Signature": sign(WEBHOOK_SECRET, padded)})
        assert streamed.status_code == 413
        # Unauthenticated and oversized: still 413, and still nothing stored.
        assert client.post(url, content=b"x" * (limit * 3)).status_code == 413
        assert inbox_rows(engine) == []

        fits = client.post(url, content=body, headers={"Content-Type": "application/json",
                                                       "X-Hub-Signature": sign(WEBHOOK_SECRET, body)})
        assert fits.status_code == 200 and len(inbox_rows(engine)) == 1


# --- (6) secrets stay out of logs and responses ---------------------------------------------------------------


class Capture(logging.Handler):
    """Keeps every record: its raw text (message, arguments, traceback) and the JSON line the daemon writes."""

    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.texts: list[str] = []
        self.json = JsonFormatter()

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        raw = [record.getMessage(), repr(record.args), repr(record.__dict__)]
        if record.exc_info:
            raw.append(logging.Formatter().formatException(record.exc_info))
        raw.append(self.json.format(record))
        self.texts.append("\n".join(raw))


@contextlib.contextmanager
def debug_logs() -> Iterator[Capture]:
    """Every logger at DEBUG into one capturing handler (also loggers that do not propagate, like uvicorn's)."""
    capture = Capture()
    manager = logging.root.manager
    loggers = [logging.getLogger()] + [lg for lg in manager.loggerDict.values() if isinstance(lg, logging.Logger)]
    levels = {lg: lg.level for lg in loggers}
    detached = []
    for lg in loggers:
        lg.setLevel(logging.DEBUG)
        if lg is logging.getLogger() or not lg.propagate:
            lg.addHandler(capture)
            detached.append(lg)
    manager._clear_cache()  # loggers cache their effective level
    try:
        yield capture
    finally:
        for lg in detached:
            lg.removeHandler(capture)
        for lg, level in levels.items():
            lg.setLevel(level)
        manager._clear_cache()


def test_secrets_never_reach_a_log_line_or_a_response(engine: Engine, jira: Jira) -> None:
    # An objective (its KPI job not scheduled) so that the objective routes answer too.
    objective = {"key": "email-leads", "name": "Email leads", "owner": "ops", "metric": "eventCount",
                 "baseline": "previous_year", "target": "+40%", "start": "2026-01-01", "end": "2026-12-31"}
    app = make_app(engine, jira.url, webhook_debounce_seconds=0, objectives=[objective],
                   ga4={"property_id": "123456789", "anonymous": True, "schedule": {"enabled": False}})
    daemon = ThreadedServer(app)  # built before the capture: uvicorn configures its loggers when built
    basic = base64.b64encode(f"{DEFAULT_EMAIL}:{JIRA_TOKEN}".encode()).decode()
    secrets = {"admin token": ADMIN_TOKEN, "Jira API token": JIRA_TOKEN, "webhook secret": WEBHOOK_SECRET,
               "Jira basic credentials": basic, "webhook path token": jira_path_token(ADMIN_TOKEN, SOURCE)}
    bodies: list[str] = []

    with debug_logs() as capture:
        daemon.start()
        try:
            sync = app.state.sync
            assert sync.run(SOURCE, mode="full", trigger="cli").status == "succeeded"
            assert app.state.daemon.outbox.drain().sent > 0

            # A user's edit in Jira arrives as a signed webhook over HTTP and is processed.
            jira.site.register_webhook(f"{daemon.url}/webhooks/jira/{SOURCE}", secret=WEBHOOK_SECRET)
            jira.site.set_field("MKT-2", "Reach", 123456)
            jira.site.wait_for_webhooks()
            assert [entry["status"] for entry in jira.site.webhook_log][:1] == [200], jira.site.webhook_log
            assert app.state.daemon.inbox.process_due() >= 1
            app.state.daemon.outbox.drain()

            with httpx.Client(base_url=daemon.url, timeout=10) as http:
                # A forged delivery and wrong admin tokens are logged as rejections.
                forged = http.post(f"/webhooks/jira/{SOURCE}", content=b'{"webhookEvent": "jira:issue_updated"}',
                                   headers={"X-Hub-Signature": sign("forged", b"{}")})
                assert forged.status_code == 401
                bodies.append(forged.text)
                bodies.append(http.get("/api/items", headers={"Authorization": "Bearer nope"}).text)

                # Jira refuses the credentials: the failure is logged and shown, the token is not.
                jira.app.state.sandbox.inject(route="*", status=401, times=-1)
                assert sync.run(SOURCE, mode="incremental", trigger="cli").status == "failed"
                jira.app.state.sandbox.clear_faults()

                item = http.get("/api/items", headers=AUTH, params={"limit": 1}).json()["data"][0]
                for method, path in api_operations(app):
                    if method != "GET":
                        continue
                    path = path.replace("/dummy-value/dummy-value", f"/{SOURCE}/{item['external_id']}")
                    path = path.replace("/objectives/dummy-value", "/objectives/email-leads")
                    response = http.get(path, headers=AUTH)
                    assert response.status_code == 200, path
                    bodies.append(response.text)
                    bodies.append(json.dumps(dict(response.headers)))
                for path in ("/health", "/ready", "/metrics", "/openapi.json", "/docs"):
                    response = http.get(path)
                    assert response.status_code == 200, path
                    bodies.append(response.text)
        finally:
            daemon.stop()

    # The capture did see everything: debug lines of the HTTP stack and the daemon's own lines.
    assert any(r.levelno == logging.DEBUG for r in capture.records)
    names = {r.name for r in capture.records}
    assert {"backlog_sync.sync", "backlog_sync.webhooks"} <= names, names
    assert any("needs new credentials" in text for text in capture.texts)
    assert len(bodies) >= 10
    for what, value in secrets.items():
        leaks = [text[:300] for text in capture.texts if value in text]
        assert not leaks, f"the {what} appears in a log record: {leaks[0]}"
        assert not [body for body in bodies if value in body], f"the {what} appears in a response"


# --- (7) a schema-driven fuzz of the admin API -------------------------------------------------------------


@dataclass
class Served:
    url: str


@pytest.fixture
def served_api(engine: Engine, jira: Jira) -> Iterator[Served]:
    app = make_app(engine, jira.url)
    server = ThreadedServer(app).start()
    try:
        assert app.state.sync.run(SOURCE, mode="full", trigger="cli").status == "succeeded"
        yield Served(url=server.url)
    finally:
        server.stop()


def _admin_api_spec() -> dict[str, Any]:
    """The daemon's OpenAPI document; building the app opens no database connection."""
    engine = make_engine("sqlite://")
    app = create_app(settings=Settings(admin_token=ADMIN_TOKEN, backlog_sync_env="production"),
                     config=AppConfig.model_validate({"sources": []}), engine=engine, start_scheduler=False)
    spec = app.openapi()
    engine.dispose()
    return spec


# The schema is loaded when the module is (schemathesis' lazy `from_fixture` loader does not work with the
# installed pytest 9: it sets `Function._nodeid`, which pytest no longer has).
fuzzed = schemathesis.openapi.from_dict(_admin_api_spec()).include(path_regex=r"^/api/")
# Valid and invalid inputs, NUL bytes included (the API refuses them with 422; PostgreSQL would not store them).
fuzzed.config.generation.update(modes=["positive", "negative"])


@fuzzed.parametrize()
@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                 HealthCheck.filter_too_much])
def test_fuzzing_the_admin_api_finds_no_server_error(case: Any, served_api: Served) -> None:
    response = case.call(base_url=served_api.url, headers=AUTH, timeout=30)
    assert response.status_code < 500, (
        f"{case.method} {case.formatted_path} {case.query} -> {response.status_code}: {response.text[:500]}")
    assert response.status_code != 401, "the fuzzer sends the admin token"


@pytest.mark.parametrize("path", [
    "/api/items?source=a%00b", "/api/items?type=%00", "/api/items?status=%00", "/api/runs?source=%00",
    "/api/items/mkt/1%002",
])
def test_a_nul_byte_in_a_parameter_is_refused_not_a_server_error(engine: Engine, path: str) -> None:
    # PostgreSQL refuses NUL in text values; the API refuses it first, on both databases.
    config = AppConfig.model_validate({"sources": []})
    app = create_app(settings=Settings(admin_token=ADMIN_TOKEN, backlog_sync_env="production"), config=config,
                     engine=engine, start_scheduler=False)
    with TestClient(app, raise_server_exceptions=False) as client:
        response = client.get(path, headers=AUTH)
    assert response.status_code == 422, response.text
    assert "NUL" in response.text
