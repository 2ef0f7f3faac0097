"""Trello card (GET /boards/{id}/cards with customFieldItems=true) -> BacklogItem, and the write payloads for
the custom fields we own.

Trello holds custom field values as strings whatever the field's type: {"number": "42"}, {"checked": "true"},
{"text": "..."}, a list field as {"idValue": option id}. They are read as strings and written as strings.
Custom field ids belong to one board, so the write payload is built from the board the card lives on
(`extra["board_id"]`, kept by the mapping). `context` is what TrelloConnector.describe() returned.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from mappings.common import map_inputs, map_remote_values, map_story
from mappings.model import OWNED_FIELDS, BacklogItem, ItemType, Status
from mappings.numbers import read_date, read_datetime
from mappings.profile import Profile, fold

POS_STEP = 16384  # Trello's own spacing between card positions; rank n sits at n * POS_STEP


class MappingError(ValueError):
    """A raw record cannot become an item at all (no id); the service skips it and logs why."""


def to_item(raw: dict[str, Any], *, source: str, profile: Profile, context: dict[str, Any]) -> BacklogItem:
    """Maps one card; odd values become problems, never exceptions (MappingError only without an id)."""
    if not isinstance(raw, dict):
        raise MappingError(f"a Trello card must be a JSON object, got {type(raw).__name__}")
    card_id = raw.get("id")
    if not isinstance(card_id, str) or not card_id.strip():
        raise MappingError(f"Trello card has no 'id' (name={str(raw.get('name'))[:40]!r})")
    context = context if isinstance(context, dict) else {}
    board_id = raw.get("idBoard") if isinstance(raw.get("idBoard"), str) else None
    board = _board(context, board_id)
    short_link = raw.get("shortLink") if isinstance(raw.get("shortLink"), str) and raw.get("shortLink") else None

    item = BacklogItem(source=source, external_id=card_id, key=short_link, title=short_link or card_id)
    name = raw.get("name")
    if isinstance(name, str) and name.strip():
        item.title = name.strip()
    else:
        item.add_problem("name", "card has no name", name)
    url = raw.get("url") or raw.get("shortUrl")
    item.url = url if isinstance(url, str) and url else None
    desc = raw.get("desc")
    if isinstance(desc, str):
        item.description = desc or None
    elif desc is not None:
        item.add_problem("desc", "description is not text", desc)
    if board is None:
        item.add_problem("idBoard", "the card's board is not one of the configured boards", board_id)
    item.container = board_id
    item.extra = {"board_id": board_id, "list_id": raw.get("idList"), "pos": raw.get("pos")}

    _map_labels_and_type(item, raw, board, profile)
    _map_status(item, raw, board, profile)
    _map_people_and_dates(item, raw, board, card_id)
    values = _custom_values(item, raw, board, profile)
    map_story(item, lambda field: _text(values[field][1]) if field in values else None)
    _map_inputs(item, values)
    _map_remote_values(item, values, board, profile)
    return item


def _board(context: dict[str, Any], board_id: str | None) -> dict[str, Any] | None:
    boards = context.get("boards")
    if not isinstance(boards, dict) or board_id is None:
        return None
    board = boards.get(board_id)
    return board if isinstance(board, dict) else None


def _map_labels_and_type(item: BacklogItem, raw: dict[str, Any], board: dict[str, Any] | None,
                         profile: Profile) -> None:
    names: list[str] = []
    labels = raw.get("labels")
    if isinstance(labels, list):
        for label in labels:
            # Trello answers with label objects (the spec says ids); accept both.
            if isinstance(label, dict) and isinstance(label.get("name"), str) and label["name"]:
                names.append(label["name"])
            elif isinstance(label, str) and board is not None:
                known = (board.get("labels") or {}).get(label) or {}
                if isinstance(known.get("name"), str) and known["name"]:
                    names.append(known["name"])
    elif isinstance(raw.get("idLabels"), list) and board is not None:
        for label_id in raw["idLabels"]:
            known = (board.get("labels") or {}).get(label_id) or {}
            if isinstance(known.get("name"), str) and known["name"]:
                names.append(known["name"])
    item.labels = names
    found = profile.item_type(None, names)
    item.item_type = found if found is not None else ItemType.OTHER


def _map_status(item: BacklogItem, raw: dict[str, Any], board: dict[str, Any] | None, profile: Profile) -> None:
    list_id = raw.get("idList")
    lists = (board or {}).get("lists") or {}
    list_name = (lists.get(list_id) or {}).get("name") if isinstance(list_id, str) else None
    item.raw_status = list_name if isinstance(list_name, str) else None
    mapped = profile.status(item.raw_status) if item.raw_status else None
    if mapped is None:
        reason = "no status mapping for this list" if item.raw_status else "the card's list is unknown"
        item.add_problem("status", reason, item.raw_status or list_id)
        mapped = Status.BACKLOG
    item.status = mapped


def _map_people_and_dates(item: BacklogItem, raw: dict[str, Any], board: dict[str, Any] | None,
                          card_id: str) -> None:
    members = raw.get("idMembers")
    if isinstance(members, list) and members:
        known = ((board or {}).get("members") or {}).get(members[0]) or {}
        name = known.get("name") or known.get("username")
        item.assignee = name if isinstance(name, str) and name else None
    due, reason = read_date(raw.get("due"))
    if reason is not None:
        item.add_problem("due", reason, raw.get("due"))
    item.due_date = due
    updated, reason = read_datetime(raw.get("dateLastActivity"))
    if reason is not None:
        item.add_problem("dateLastActivity", reason, raw.get("dateLastActivity"))
    item.updated_at = updated
    item.created_at = created_from_id(card_id)


def created_from_id(object_id: str) -> datetime | None:
    """A Trello id starts with its creation time (8 hex digits of Unix seconds), as MongoDB ObjectIds do."""
    try:
        return datetime.fromtimestamp(int(object_id[:8], 16), tz=UTC)
    except (ValueError, OverflowError, OSError):
        return None


_TABLES_KEY = "__trello_field_tables__"


def _field_tables(board: dict[str, Any] | None, profile: Profile) -> dict[str, list[str]]:
    """Logical field -> the board's custom field ids holding it (profile order), built once per board."""
    if board is None:
        return {}
    fields = board.get("custom_fields") if isinstance(board.get("custom_fields"), dict) else {}
    stamp = (id(fields), len(fields), id(profile))
    cached = board.get(_TABLES_KEY)
    if isinstance(cached, tuple) and cached[0] == stamp:
        return cached[1]
    by_name: dict[str, list[str]] = {}
    for field_id, meta in fields.items():
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            by_name.setdefault(fold(meta["name"]), []).append(str(field_id))
    tables = {logical: [fid for name in names for fid in by_name.get(fold(name), [])]
              for logical, names in profile.fields.items()}
    try:
        board[_TABLES_KEY] = (stamp, tables)
    except TypeError:  # a read-only mapping: not cached
        pass
    return tables


def _custom_values(item: BacklogItem, raw: dict[str, Any], board: dict[str, Any] | None,
                   profile: Profile) -> dict[str, tuple[str, Any]]:
    """Logical field -> (custom field id, value as Trello holds it, unwrapped: "42", True, option text)."""
    items = raw.get("customFieldItems")
    if items is None:
        return {}
    if not isinstance(items, list):
        item.add_problem("customFieldItems", "customFieldItems is not a list", items)
        return {}
    by_field: dict[str, Any] = {}
    fields = (board or {}).get("custom_fields") or {}
    for entry in items:
        if not isinstance(entry, dict) or not isinstance(entry.get("idCustomField"), str):
            continue
        field_id = entry["idCustomField"]
        meta = fields.get(field_id) or {}
        by_field[field_id] = _unwrap(entry, meta)
    values: dict[str, tuple[str, Any]] = {}
    for logical, field_ids in _field_tables(board, profile).items():
        for field_id in field_ids:
            value = by_field.get(field_id)
            if value is not None and value != "":
                values[logical] = (field_id, value)
                break
    return values


def _unwrap(entry: dict[str, Any], meta: dict[str, Any]) -> Any:
    """One customFieldItem's value: the string Trello holds, True/False for a checkbox, a list option's text."""
    if entry.get("idValue"):
        options = meta.get("options") or {}
        return options.get(entry["idValue"], "")
    value = entry.get("value")
    if not isinstance(value, dict) or not value:
        return None
    if "checked" in value:
        return str(value["checked"]).strip().lower() == "true"
    for key in ("number", "text", "date"):
        if key in value:
            return value[key]
    return next(iter(value.values()))


def _map_inputs(item: BacklogItem, values: dict[str, tuple[str, Any]]) -> None:
    def value(logical: str) -> Any:
        raw_value = values[logical][1] if logical in values else None
        if isinstance(raw_value, bool):
            return 1 if raw_value else 0  # a checkbox input counts as 1 (checked) or 0
        return raw_value

    map_inputs(item, value)


def _map_remote_values(item: BacklogItem, values: dict[str, tuple[str, Any]], board: dict[str, Any] | None,
                       profile: Profile) -> None:
    tables = _field_tables(board, profile)
    # A field not configured or not on this board has nothing to compare against.
    map_remote_values(item, lambda logical: values[logical][1] if logical in values else None,
                      configured=lambda logical: bool(tables.get(logical)), text=_text)


def _text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def trello_number(value: float | int) -> str:
    """A number as Trello stores it in a number custom field: a string ("12.5", "3")."""
    number = float(value)
    return str(int(number)) if number.is_integer() else repr(number)


def owned_field_payload(values: dict[str, Any], *, profile: Profile, context: dict[str, Any],
                        extra: dict[str, Any]) -> dict[str, Any]:
    """Builds the PUT /cards/{id}/customFields body (plus "pos" for the rank order) on the card's board.

    Raises ValueError naming the field and the board when a configured owned field is not on that board.
    """
    context = context if isinstance(context, dict) else {}
    board_id = (extra or {}).get("board_id")
    board = _board(context, board_id)
    if board is None:
        raise ValueError(f"the card's board {board_id!r} is not one of the configured boards")
    tables = _field_tables(board, profile)
    items: list[dict[str, Any]] = []
    payload: dict[str, Any] = {"customFieldItems": items}
    for logical, value in values.items():
        if logical not in OWNED_FIELDS:
            raise ValueError(f"{logical!r} is not a field backlog-sync owns (owned: {', '.join(OWNED_FIELDS)})")
        names = profile.field_names(logical)
        if not names:
            raise ValueError(f"no Trello custom field is configured for {logical!r}")
        field_ids = tables.get(logical) or []
        if not field_ids:
            raise ValueError(
                f"the Trello custom field {names[0]!r} configured for {logical!r} is not on board "
                f"{board.get('name') or board_id!r}; create it (or set write_back.create_missing_fields) "
                "or change the field name")
        field_id = field_ids[0]
        if value is None:
            items.append({"idCustomField": field_id, "value": ""})  # Trello clears a field with an empty value
        elif logical == "kpi_result":
            items.append({"idCustomField": field_id, "value": {"text": str(value)}})
        else:
            items.append({"idCustomField": field_id, "value": {"number": trello_number(value)}})
        if logical == "rank" and value is not None and context.get("set_position"):
            payload["pos"] = int(value) * POS_STEP
    return payload


def comment_body(text: str, *, context: dict[str, Any] | None = None) -> dict[str, Any]:  # noqa: ARG001
    """Builds the body of POST /cards/{id}/actions/comments."""
    return {"text": text}


def comment_text(body: Any) -> str:
    """The text of a comment the connector read back (a commentCard action's data.text: plain text already)."""
    return str(body)
