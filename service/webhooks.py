"""Webhook receivers for every tool: verify, persist to the inbox, acknowledge; the inbox worker processes.

Routes: POST /webhooks/{kind} (when one source of that kind is configured) or /webhooks/{kind}/{source};
Jira without a signing secret is only accepted on /webhooks/jira/{source}/{path_token}; Asana calls back on
/webhooks/asana/{source}/{project gid}, one webhook (and one handshake secret) per project. HEAD answers 200
(Trello checks the callback with HEAD before it creates a webhook)."""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, timedelta
from typing import Any

from fastapi import APIRouter, HTTPException, Request, Response, status
from starlette.concurrency import run_in_threadpool

from service.config import AppConfig, SourceConfig
from service.db import session_scope
from service.inbox import delivery_key
from service.tables import WebhookSecretRow, utcnow

log = logging.getLogger("backlog_sync.webhooks")

router = APIRouter(prefix="/webhooks", tags=["webhooks"])


class BodyTooLarge(Exception):
    pass


async def read_limited(request: Request, limit: int) -> bytes:
    """Reads the body, refusing more than `limit` bytes without buffering the rest."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE, f"body over {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def jira_path_token(admin_token: str, source_name: str) -> str:
    """The unguessable path segment that protects a Jira webhook configured without a signing secret."""
    return hmac.new(admin_token.encode(), f"jira-webhook:{source_name}".encode(), hashlib.sha256).hexdigest()[:40]


def _find_source(config: AppConfig, kind: str, name: str | None) -> SourceConfig:
    candidates = [s for s in config.sources if s.kind == kind and (name is None or s.name == name)]
    if not candidates:
        named = f" named {name!r}" if name else ""
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no {kind} source{named} is configured")
    if len(candidates) > 1:
        raise HTTPException(status.HTTP_404_NOT_FOUND,
                            f"several {kind} sources are configured: use /webhooks/{kind}/<source name>")
    return candidates[0]


def _unauthorised(source: SourceConfig, why: str) -> HTTPException:
    log.warning("rejected a %s webhook delivery for %s: %s", source.kind, source.name, why,
                extra={"source": source.name, "event": "webhook_rejected"})
    return HTTPException(status.HTTP_401_UNAUTHORIZED, "webhook signature missing or invalid")


def _stored_secret(engine: Any, source_name: str) -> str | None:
    with session_scope(engine) as db:
        row = db.get(WebhookSecretRow, source_name)
        return row.secret if row is not None else None


def _save_secret(engine: Any, source_name: str, secret: str) -> None:
    with session_scope(engine) as db:
        row = db.get(WebhookSecretRow, source_name)
        if row is None:
            db.add(WebhookSecretRow(source=source_name, secret=secret))
        else:
            row.secret = secret


def asana_secret_key(source_name: str, project_gid: str | None) -> str:
    """Where an Asana webhook's handshake secret is kept: per source, and per project when the callback names one.

    The key fits the table's 64 characters: a long source name with its project is hashed instead."""
    if not project_gid:
        return source_name
    key = f"{source_name}/{project_gid}"
    return key if len(key) <= 64 else "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:57]


HANDSHAKE_WINDOW = timedelta(minutes=5)


def _handshake_key(source_name: str) -> str:
    return asana_secret_key("~registering", source_name)  # no source name starts with "~": never a secret's key


def open_handshake(engine: Any, source_name: str) -> None:
    """Lets the daemon accept Asana handshakes for a source for a few minutes (`webhooks register` calls it)."""
    with session_scope(engine) as db:
        row = db.get(WebhookSecretRow, _handshake_key(source_name))
        if row is None:
            db.add(WebhookSecretRow(source=_handshake_key(source_name), secret="registration in progress"))
        else:
            row.created_at = utcnow()  # the window starts again


def close_handshake(engine: Any, source_name: str) -> None:
    with session_scope(engine) as db:
        row = db.get(WebhookSecretRow, _handshake_key(source_name))
        if row is not None:
            db.delete(row)


@contextmanager
def handshake_window(engine: Any, source_name: str) -> Iterator[None]:
    """Accepts Asana handshakes for a source while the block runs (a webhook registration)."""
    open_handshake(engine, source_name)
    try:
        yield
    finally:
        close_handshake(engine, source_name)


def handshake_open(engine: Any, source_name: str) -> bool:
    with session_scope(engine) as db:
        row = db.get(WebhookSecretRow, _handshake_key(source_name))
        if row is None:
            return False
        opened = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
        return utcnow() - opened < HANDSHAKE_WINDOW


def callback_url(source: SourceConfig, request: Request) -> str:
    """The URL the tool signs with: the configured public URL when given, else the one we were called on."""
    return source.webhook_url or str(request.url)


async def _receive(request: Request, kind: str, source_name: str | None, path_token: str | None) -> Response:
    app = request.app
    config: AppConfig = app.state.config
    source = _find_source(config, kind, source_name)
    body = await read_limited(request, app.state.settings.max_webhook_body_bytes)
    headers = {k.lower(): v for k, v in request.headers.items()}
    sync = app.state.sync
    connector = sync.connector(source.name)  # built once, without calling the tool

    # Asana's handshake: echo the secret and keep it to verify later deliveries. There is one webhook per project,
    # each calling back on /webhooks/asana/{source}/{project gid}, so each has its own secret.
    if kind == "asana" and path_token and path_token not in getattr(source, "projects", []):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"project {path_token[:40]!r} is not configured for "
                                                       f"{source.name}")
    secret_key = asana_secret_key(source.name, path_token) if kind == "asana" else source.name
    if kind == "asana" and "x-hook-secret" in headers:
        # Only while `webhooks register` runs for this source: otherwise anyone could replace the secret.
        if not await run_in_threadpool(handshake_open, app.state.engine, source.name):
            log.warning("refused an Asana handshake for %s: no registration is in progress", secret_key,
                        extra={"source": source.name, "event": "webhook_rejected"})
            raise HTTPException(status.HTTP_403_FORBIDDEN, "no webhook registration is in progress for this source; "
                                                           "run `backlog-sync webhooks register`")
        await run_in_threadpool(_save_secret, app.state.engine, secret_key, headers["x-hook-secret"])
        log.info("completed the Asana webhook handshake for %s", secret_key, extra={"source": source.name})
        return Response(status_code=200, headers={"X-Hook-Secret": headers["x-hook-secret"]})

    if kind == "jira" and source.webhook_secret is None:
        expected = jira_path_token(app.state.admin_token, source.name)
        if not path_token or not hmac.compare_digest(path_token, expected):
            raise _unauthorised(source, "wrong or missing path token")
        verified = True
    elif kind == "asana":
        secret = await run_in_threadpool(_stored_secret, app.state.engine, secret_key)
        if secret is None:
            raise _unauthorised(source, "no handshake has been completed for this source")
        verified = connector.verify_webhook(headers=headers, body=body, url=callback_url(source, request),
                                            secret=secret)
    else:
        if source.webhook_secret is None:
            raise _unauthorised(source, f"no webhook_secret is configured for {source.name}")
        verified = connector.verify_webhook(headers=headers, body=body, url=callback_url(source, request),
                                            secret=source.webhook_secret.resolve())
    if not verified:
        raise _unauthorised(source, "signature mismatch")

    try:
        events = connector.parse_webhook(body)
    except (ValueError, KeyError, TypeError) as exc:
        log.warning("rejected a malformed %s webhook body for %s: %s", kind, source.name, exc)
        raise HTTPException(status.HTTP_400_BAD_REQUEST, f"malformed {kind} webhook body: {exc}") from None
    if not events:  # heartbeats and events about nothing we track
        return Response(status_code=200)
    tool_delivery = headers.get("x-atlassian-webhook-identifier") or (
        events[0].delivery_id if len(events) == 1 else None
    )
    key = delivery_key(tool_delivery, body)
    items = {event.external_id for event in events}
    item_id = next(iter(items)) if len(items) == 1 else None  # one item: its burst is debounced together
    stored = await app.state.intake.store(source.name, key, body, item_id)
    metrics = getattr(app.state, "metrics", None)
    if metrics is not None:
        metrics.webhook_received(source.name, duplicate=not stored)
    if stored:
        app.state.daemon.inbox.wake.set()
    return Response(content=json.dumps({"stored": stored}), media_type="application/json", status_code=200)


@router.head("/{kind}")
@router.head("/{kind}/{source_name}")
@router.head("/{kind}/{source_name}/{path_token}")
def webhook_head(kind: str) -> Response:  # noqa: ARG001
    """Answers the tool's check of the callback URL."""
    return Response(status_code=200)


@router.post("/{kind}")
async def webhook_for_kind(kind: str, request: Request) -> Response:
    """Receives a delivery for the only configured source of this kind."""
    return await _receive(request, kind, None, None)


@router.post("/{kind}/{source_name}")
async def webhook_for_source(kind: str, source_name: str, request: Request) -> Response:
    """Receives a delivery for a named source."""
    return await _receive(request, kind, source_name, None)


@router.post("/{kind}/{source_name}/{path_token}")
async def webhook_with_path_token(kind: str, source_name: str, path_token: str, request: Request) -> Response:
    """Receives a Jira delivery protected by a path token (Jira webhooks configured without a secret), or an Asana
    delivery for one project (the last segment is the project's gid)."""
    return await _receive(request, kind, source_name, path_token)
