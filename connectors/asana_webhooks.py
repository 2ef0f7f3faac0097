"""Asana webhooks: X-Hook-Signature verification and parsing of the {"events": [...]} bodies Asana sends."""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from connectors.base import WebhookEvent, webhook_payload

# Events about a task's own record; stories (comments) refresh their parent task.
TASK_ACTIONS = {"added", "changed", "removed", "deleted", "undeleted"}


def sign(secret: str, body: bytes) -> str:
    """Returns the X-Hook-Signature Asana sends for a body: the hex HMAC-SHA256 of the raw body."""
    return hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify_webhook(*, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool:  # noqa: ARG001
    """Checks X-Hook-Signature against the secret of the handshake, in constant time."""
    if not secret:
        return False
    supplied = {k.lower(): v for k, v in headers.items()}.get("x-hook-signature", "").strip()
    if not supplied:
        return False
    # compare_digest refuses a str with non-ASCII characters (TypeError): compare bytes, a foreign
    # character becoming '?', which never matches a hex digest.
    return hmac.compare_digest(supplied.encode("ascii", "replace"), sign(secret, body).encode("ascii"))


def gid_of(value: Any) -> str | None:
    """The gid of an Asana compact record ({"gid": ..., "resource_type": ...}), or None."""
    if isinstance(value, dict) and value.get("gid") not in (None, ""):
        return str(value["gid"])
    return None


def _custom_field_value(value: dict[str, Any]) -> Any:
    """The value a custom_fields change carries, when Asana includes it (number, text, enum option)."""
    for attr in ("number_value", "text_value"):
        if attr in value:
            return value[attr]
    enum = value.get("enum_value")
    if isinstance(enum, dict):
        return enum.get("name")
    return value.get("display_value")


def parse_webhook(body: bytes) -> list[WebhookEvent]:
    """Parses one delivery into events; a heartbeat (no events) gives []; raises ValueError for a malformed body."""
    payload = webhook_payload(body)
    raw_events = payload.get("events")
    if not isinstance(raw_events, list):
        raise ValueError("'events' is missing or not a list")
    events: list[WebhookEvent] = []
    for index, raw in enumerate(raw_events):
        if not isinstance(raw, dict):
            raise ValueError(f"events[{index}] is not an object")
        resource = raw.get("resource")
        action = raw.get("action")
        if not isinstance(resource, dict) or not isinstance(action, str):
            raise ValueError(f"events[{index}] has no resource or action")
        kind = resource.get("resource_type")
        parent = raw.get("parent") if isinstance(raw.get("parent"), dict) else {}
        if kind == "task" and action in TASK_ACTIONS:
            task_gid = gid_of(resource)
        elif kind == "story" and parent.get("resource_type") == "task":
            task_gid = gid_of(parent)  # a comment on a task: refresh the task (it may carry a story or KPI edit)
        else:
            continue  # projects, sections, tags...: nothing we map changed
        if task_gid is None:
            raise ValueError(f"events[{index}] names a {kind} without a gid")
        change = raw.get("change") if isinstance(raw.get("change"), dict) else {}
        changed: list[str] = []
        changes: dict[str, Any] = {}
        field = change.get("field")
        if kind == "task" and action == "changed" and isinstance(field, str):
            new_value = change.get("new_value")
            if field == "custom_fields" and isinstance(new_value, dict) and gid_of(new_value):
                # Our owned fields are custom fields: name the field by its gid, as describe() lists it.
                changed.append(gid_of(new_value) or "")
                changes[changed[-1]] = _custom_field_value(new_value)
            else:
                changed.append(field)
        delivery = ":".join(str(part) for part in (
            action, task_gid, raw.get("created_at", ""), field or "", gid_of(change.get("new_value")) or "",
            gid_of(resource) if kind == "story" else ""))
        events.append(WebhookEvent(
            delivery_id=delivery,
            external_id=task_gid,
            kind=f"{kind}:{action}",
            deleted=kind == "task" and action == "deleted",
            changed_fields=changed,
            changes=changes,
        ))
    return events
