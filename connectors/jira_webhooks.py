"""Jira webhooks: X-Hub-Signature verification and parsing of the v2-shaped event bodies Jira sends."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from connectors.base import WebhookEvent, webhook_payload

ISSUE_EVENTS = {"jira:issue_created", "jira:issue_updated", "jira:issue_deleted"}
COMMENT_EVENTS = {"comment_created", "comment_updated", "comment_deleted"}


def sign(secret: str, body: bytes) -> str:
    """Returns the X-Hub-Signature value Jira sends for a body: sha256=<hex HMAC-SHA256>."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_webhook(*, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool:  # noqa: ARG001
    """Checks X-Hub-Signature against the configured secret, in constant time."""
    if not secret:
        return False
    supplied = {k.lower(): v for k, v in headers.items()}.get("x-hub-signature", "")
    if not supplied.startswith("sha256="):
        return False
    return hmac.compare_digest(supplied.strip(), sign(secret, body))


def parse_webhook(body: bytes) -> list[WebhookEvent]:
    """Parses one delivery into events; raises ValueError (naming what is wrong) for a malformed body."""
    payload = webhook_payload(body)
    kind = payload.get("webhookEvent")
    if not isinstance(kind, str):
        raise ValueError("webhookEvent is missing")
    if kind not in ISSUE_EVENTS | COMMENT_EVENTS:
        return []  # events we do not track (sprints, projects...) are acknowledged and dropped
    issue = payload.get("issue")
    if not isinstance(issue, dict) or not issue.get("id"):
        raise ValueError(f"{kind} without issue.id")
    issue_id = str(issue["id"])
    changelog = payload.get("changelog") if isinstance(payload.get("changelog"), dict) else {}
    items = [i for i in changelog.get("items") or [] if isinstance(i, dict)]
    changed: list[str] = []
    changes: dict[str, Any] = {}
    for item in items:
        name = str(item.get("fieldId") or item.get("field") or "")
        if not name:
            continue
        changed.append(name)
        changes[name] = item.get("toString") if item.get("toString") is not None else item.get("to")
    comment = payload.get("comment") if isinstance(payload.get("comment"), dict) else {}
    event_id = changelog.get("id") or comment.get("id", "")
    delivery = ":".join(str(part) for part in (kind, issue_id, payload.get("timestamp", ""), event_id))
    return [
        WebhookEvent(
            delivery_id=delivery,
            external_id=issue_id,
            kind=kind,
            deleted=kind == "jira:issue_deleted",
            # A comment changes no field: it still refreshes the item (it may carry a KPI or a story edit).
            changed_fields=changed if kind == "jira:issue_updated" else [],
            changes=changes,
        )
    ]
