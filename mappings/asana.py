"""Asana task (GET /projects/{gid}/tasks with opt_fields) -> BacklogItem, and the write payloads for our fields."""

from __future__ import annotations

from typing import Any

from mappings.common import map_inputs, map_remote_values, map_story
from mappings.model import OWNED_FIELDS, BacklogItem, ItemType, Status
from mappings.numbers import read_date, read_datetime
from mappings.profile import Profile, fold


class MappingError(ValueError):
    """A raw record cannot become an item at all (no gid); the service skips it and logs why."""


def to_item(raw: dict[str, Any], *, source: str, profile: Profile, context: dict[str, Any]) -> BacklogItem:
    """Maps one task; odd values become problems, never exceptions (MappingError only when it has no gid)."""
    if not isinstance(raw, dict):
        raise MappingError(f"an Asana task must be a JSON object, got {type(raw).__name__}")
    gid = raw.get("gid")
    if isinstance(gid, bool) or not isinstance(gid, str | int) or not str(gid).strip():
        raise MappingError(f"Asana task has no 'gid' (name={str(raw.get('name'))[:40]!r})")
    gid = str(gid).strip()
    context = context if isinstance(context, dict) else {}
    item = BacklogItem(source=source, external_id=gid, title=gid)

    name = raw.get("name")
    if isinstance(name, str) and name.strip():
        item.title = name.strip()
    else:
        item.add_problem("name", "task has no name", name)
    notes = raw.get("notes")
    if isinstance(notes, str):
        item.description = notes.strip() or None
    elif notes is not None:
        item.add_problem("notes", "notes is not text", notes)
    url = raw.get("permalink_url")
    if isinstance(url, str) and url:
        item.url = url

    tags = raw.get("tags")
    if isinstance(tags, list):
        item.labels = [t["name"] for t in tags if isinstance(t, dict) and isinstance(t.get("name"), str) and t["name"]]
    elif tags is not None:
        item.add_problem("tags", "tags is not a list", tags)

    fields = _CustomFields(raw.get("custom_fields"), profile, item)
    _map_type(item, fields, profile)
    _map_status(item, raw, profile, context)
    _map_people_and_dates(item, raw)
    map_story(item, fields.text)
    _map_inputs(item, fields)
    _map_remote_values(item, fields, context, profile)
    return item


def _map_type(item: BacklogItem, fields: _CustomFields, profile: Profile) -> None:
    type_name = fields.text("item_type")
    item.extra["asana_type"] = type_name
    item_type = profile.item_type(type_name, item.labels)
    if item_type is None and type_name:
        item.add_problem("item_type", "no item type mapping for this option", type_name)
    item.item_type = item_type if item_type is not None else ItemType.OTHER


def _map_status(item: BacklogItem, raw: dict[str, Any], profile: Profile, context: dict[str, Any]) -> None:
    configured = [str(p) for p in context.get("configured_projects") or []]
    memberships = [m for m in raw.get("memberships") or [] if isinstance(m, dict)]
    chosen: dict[str, Any] | None = None
    for membership in memberships:
        project = membership.get("project") if isinstance(membership.get("project"), dict) else {}
        if not configured or str(project.get("gid")) in configured:
            chosen = membership
            break
    section_name = None
    if chosen is not None:
        project = chosen.get("project") if isinstance(chosen.get("project"), dict) else {}
        item.container = str(project.get("gid")) if project.get("gid") else None
        section = chosen.get("section") if isinstance(chosen.get("section"), dict) else {}
        section_name = section.get("name") if isinstance(section.get("name"), str) else None
    item.raw_status = section_name
    mapped = profile.status(section_name) if section_name else None
    completed = raw.get("completed")
    if completed is True and mapped is not Status.CANCELLED:
        item.status = Status.DONE  # a completed task is done whatever section it sits in
        return
    if completed not in (True, False, None):
        item.add_problem("completed", "completed is not true or false", completed)
    if mapped is None:
        item.add_problem("section", "no status mapping for this section" if section_name
                         else "task is in no section of a configured project", section_name)
        mapped = Status.BACKLOG
    item.status = mapped


def _map_people_and_dates(item: BacklogItem, raw: dict[str, Any]) -> None:
    assignee = raw.get("assignee")
    if isinstance(assignee, dict):
        name = assignee.get("name")
        item.assignee = name if isinstance(name, str) and name else None
    elif assignee is not None:
        item.add_problem("assignee", "assignee is not a user object", assignee)
    for field_name, attr, reader in (
        ("due_on", "due_date", read_date),
        ("created_at", "created_at", read_datetime),
        ("modified_at", "updated_at", read_datetime),
    ):
        value, reason = reader(raw.get(field_name))
        if reason is not None:
            item.add_problem(field_name, reason, raw.get(field_name))
        setattr(item, attr, value)


def _map_inputs(item: BacklogItem, fields: _CustomFields) -> None:
    map_inputs(item, fields.value)


def _map_remote_values(item: BacklogItem, fields: _CustomFields, context: dict[str, Any], profile: Profile) -> None:
    def configured(logical: str) -> bool:
        # Not configured or not in these projects: nothing to compare against.
        return field_gid(logical, profile=profile, context=context) is not None or fields.has(logical)

    map_remote_values(item, fields.value, configured=configured, text=_text)


_NAMES_CACHE: dict[int, tuple[Profile, dict[str, tuple[str, ...]]]] = {}


def _folded_names(profile: Profile) -> dict[str, tuple[str, ...]]:
    """The profile's folded custom field names per logical field, built once per profile (not once per task)."""
    cached = _NAMES_CACHE.get(id(profile))
    if cached is not None and cached[0] is profile:
        return cached[1]
    table = {logical: tuple(fold(name) for name in names) for logical, names in profile.fields.items()}
    if len(_NAMES_CACHE) > 64:  # profiles are few (one per source and run); never let this grow
        _NAMES_CACHE.clear()
    _NAMES_CACHE[id(profile)] = (profile, table)
    return table


class _CustomFields:
    """A task's custom fields by folded name, read through the profile's names for each logical field."""

    def __init__(self, raw: Any, profile: Profile, item: BacklogItem) -> None:
        self._names = _folded_names(profile)
        self._by_name: dict[str, dict[str, Any]] = {}
        if raw is None:
            return
        if not isinstance(raw, list):
            item.add_problem("custom_fields", "custom_fields is not a list", raw)
            return
        for entry in raw:
            if isinstance(entry, dict) and isinstance(entry.get("name"), str):
                self._by_name.setdefault(fold(entry["name"]), entry)


    def has(self, logical: str) -> bool:
        return any(name in self._by_name for name in self._names.get(logical, ()))

    def value(self, logical: str) -> Any:
        """The first non-empty value among the fields configured for a logical field (number, option, text)."""
        for name in self._names.get(logical, ()):
            entry = self._by_name.get(name)
            if entry is not None:
                value = _raw_value(entry)
                if not _is_empty(value):
                    return value
        return None

    def text(self, logical: str) -> str | None:
        return _text(self.value(logical))


def _text(value: Any) -> str | None:
    """A custom field value as text: a number without trailing zeros, an option's name, trimmed text."""
    if _is_empty(value) or isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return f"{value:g}"
    return str(value).strip() or None


def _raw_value(entry: dict[str, Any]) -> Any:
    """A custom field's value in the shape its type holds it: number, enum option name, text, else display text."""
    kind = entry.get("resource_subtype") or entry.get("type")
    if kind == "number" or (kind is None and "number_value" in entry):
        return entry.get("number_value")
    if kind == "enum" or (kind is None and "enum_value" in entry):
        option = entry.get("enum_value")
        return option.get("name") if isinstance(option, dict) else None
    if kind == "text" or (kind is None and "text_value" in entry):
        return entry.get("text_value")
    return entry.get("display_value")


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


_TABLE_KEY = "__asana_field_table__"


def _names_to_gids(context: dict[str, Any]) -> dict[str, str]:
    """The projects' folded custom field name -> gid, built once per context (not once per task)."""
    known = context.get("fields") if isinstance(context, dict) else None
    if not isinstance(known, dict):
        return {}
    stamp = (id(known), len(known))
    cached = context.get(_TABLE_KEY)
    if isinstance(cached, tuple) and cached[0] == stamp:
        return cached[1]
    by_name: dict[str, str] = {}
    for gid, meta in known.items():
        if isinstance(meta, dict) and isinstance(meta.get("name"), str):
            by_name.setdefault(fold(meta["name"]), str(gid))
    try:
        context[_TABLE_KEY] = (stamp, by_name)
    except TypeError:  # a read-only mapping: fine, just not cached
        pass
    return by_name


def field_gid(logical: str, *, profile: Profile, context: dict[str, Any]) -> str | None:
    """The gid of the first configured name for a logical field among the projects' custom fields, or None."""
    by_name = _names_to_gids(context)
    for name in profile.field_names(logical):
        if fold(name) in by_name:
            return by_name[fold(name)]
    return None


def owned_field_payload(values: dict[str, Any], *, profile: Profile, context: dict[str, Any]) -> dict[str, Any]:
    """Builds the PUT /tasks/{gid} body that sets our number custom fields, e.g. {"score": 12.5, "rank": 3}.

    Raises ValueError naming the field when a configured owned field is not a custom field of the projects.
    """
    custom_fields: dict[str, Any] = {}
    fields = context.get("fields") if isinstance(context, dict) else None
    for logical, value in values.items():
        if logical not in OWNED_FIELDS:
            raise ValueError(f"{logical!r} is not a field backlog-sync owns (owned: {', '.join(OWNED_FIELDS)})")
        names = profile.field_names(logical)
        if not names:
            raise ValueError(f"no Asana custom field is configured for {logical!r}")
        gid = field_gid(logical, profile=profile, context=context)
        if gid is None:
            raise ValueError(
                f"the Asana custom field {names[0]!r} configured for {logical!r} is not set up on the configured "
                "projects; add it to them (a number field) or change the field name")
        kind = ((fields or {}).get(gid) or {}).get("type")
        if logical in ("score", "rank") and kind not in (None, "number"):
            raise ValueError(f"the Asana custom field {names[0]!r} for {logical!r} is a {kind} field, not a number")
        custom_fields[gid] = value
    return {"data": {"custom_fields": custom_fields}}


def comment_body(text: str, *, context: dict[str, Any] | None = None) -> dict[str, Any]:  # noqa: ARG001
    """Builds the POST /tasks/{gid}/stories body of a comment (plain text)."""
    return {"data": {"text": text}}


def comment_text(body: Any) -> str:
    """The text of a comment story the connector read back (its `text`: plain text already)."""
    return str(body)
