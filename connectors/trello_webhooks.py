"""Trello webhooks: X-Trello-Webhook verification and parsing of the action bodies Trello posts.

The signature is base64(HMAC-SHA1(application secret, body + callback URL)), the URL exactly as it was given
when the webhook was created. Non-ASCII text: Trello's old documentation warned that its Node signer treated
the payload as a "binary" string (each character cut to its low 8 bits, so an en dash U+2013 was signed as the
byte 0x13). Trello fixed that in 2016 and kept the fix ("we accidentally fixed this (and broke backwards
compatibility) but no-one seemed to mind, so we're keeping it", trello-archive/api-docs pull request 26, which
removed the caveat). What Trello signs today is the UTF-8 text of body + URL, which for the raw body is the
received bytes followed by the URL's UTF-8 bytes: that is what is checked here, and only that.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from typing import Any

from connectors.base import WebhookEvent, webhook_payload

# Actions about a card that may change what we map (fields, list, labels, members, custom fields, comments).
CARD_ACTIONS = frozenset({
    "createCard", "updateCard", "deleteCard", "copyCard", "moveCardToBoard", "moveCardFromBoard",
    "convertToCardFromCheckItem", "updateCustomFieldItem", "commentCard", "addLabelToCard",
    "removeLabelFromCard", "addMemberToCard", "removeMemberFromCard", "emailCard",
})


def sign(secret: str, body: bytes, callback_url: str) -> str:
    """Returns the X-Trello-Webhook value Trello sends for a body posted to `callback_url`."""
    digest = hmac.new(secret.encode("utf-8"), body + callback_url.encode("utf-8"), hashlib.sha1).digest()
    return base64.b64encode(digest).decode("ascii")


def verify_webhook(*, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool:
    """Checks X-Trello-Webhook against the application secret and the registered callback URL, in constant time."""
    if not secret:
        return False
    supplied = {k.lower(): v for k, v in headers.items()}.get("x-trello-webhook", "").strip()
    if not supplied:
        return False
    return hmac.compare_digest(supplied.encode("ascii", "replace"), sign(secret, body, url).encode("ascii"))


def parse_webhook(body: bytes) -> list[WebhookEvent]:
    """Parses one delivery into at most one card event; raises ValueError naming what is wrong."""
    payload = webhook_payload(body)
    action = payload.get("action")
    if not isinstance(action, dict):
        raise ValueError("action is missing")
    kind = action.get("type")
    if not isinstance(kind, str) or not kind:
        raise ValueError("action.type is missing")
    if kind not in CARD_ACTIONS:
        return []  # list, board and member actions are acknowledged and dropped (the reconcile catches renames)
    data = action.get("data") if isinstance(action.get("data"), dict) else {}
    card = data.get("card") if isinstance(data.get("card"), dict) else {}
    card_id = card.get("id")
    if not isinstance(card_id, str) or not card_id:
        raise ValueError(f"{kind} without action.data.card.id")
    action_id = action.get("id")
    if not isinstance(action_id, str) or not action_id:
        raise ValueError(f"{kind} without action.id")
    changed, changes = _changes(kind, data)
    return [
        WebhookEvent(
            delivery_id=f"trello:{action_id}",
            external_id=card_id,
            kind=kind,
            deleted=kind == "deleteCard",
            changed_fields=changed,
            changes=changes,
        )
    ]


def _changes(kind: str, data: dict[str, Any]) -> tuple[list[str], dict[str, Any]]:
    """Names what the action changed, as field ids (custom fields) or card attribute names, for echo detection."""
    if kind == "updateCustomFieldItem":
        field = data.get("customField") if isinstance(data.get("customField"), dict) else {}
        item = data.get("customFieldItem") if isinstance(data.get("customFieldItem"), dict) else {}
        field_id = field.get("id") or item.get("idCustomField")
        if not isinstance(field_id, str) or not field_id:
            return [], {}
        value = item.get("value")
        # Trello sends the value as it stores it: {"number": "12.5"}; None when the field was cleared.
        scalar = next(iter(value.values()), None) if isinstance(value, dict) and value else None
        return [field_id], {field_id: scalar}
    if kind == "updateCard":
        old = data.get("old") if isinstance(data.get("old"), dict) else {}
        card = data.get("card") if isinstance(data.get("card"), dict) else {}
        return list(old), {name: card.get(name) for name in old}
    return [], {}  # a new card, a comment, a label: always a change of the user's
