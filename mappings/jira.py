"""Jira Cloud issue (REST v3, fields=*all) -> BacklogItem, and the write payloads for the fields we own."""

from __future__ import annotations

import re
from typing import Any

from mappings.adf import adf_to_text, text_to_adf
from mappings.common import map_inputs, map_remote_values, map_story
from mappings.model import OWNED_FIELDS, BacklogItem, ItemType, Status
from mappings.numbers import read_date, read_datetime
from mappings.profile import Profile, fold

_SPRINT_SCHEMA = "com.pyxis.greenhopper.jira:gh-sprint"
# Jira Server and old Cloud sites serialise a sprint as a string:
# "com.atlassian.greenhopper.service.sprint.Sprint@1f[id=1,state=ACTIVE,name=X,...]".
_LEGACY_SPRINT = re.compile(r"\[(?P<attrs>.*)\]\s*$")


class MappingError(ValueError):
    """A raw record cannot become an item at all (no id); the service skips it and logs why."""


def to_item(raw: dict[str, Any], *, source: str, profile: Profile, context: dict[str, Any]) -> BacklogItem:
    """Maps one issue from GET /rest/api/3/search/jql; odd values become problems, never exceptions.

    Raises MappingError only when the issue has no usable "id", since nothing could identify the item.
    """
    if not isinstance(raw, dict):
        raise MappingError(f"a Jira issue must be a JSON object, got {type(raw).__name__}")
    issue_id = raw.get("id")
    if isinstance(issue_id, bool) or not isinstance(issue_id, str | int) or not str(issue_id).strip():
        raise MappingError(f"Jira issue has no 'id' (key={str(raw.get('key'))[:40]!r})")
    key = raw.get("key") if isinstance(raw.get("key"), str) and raw.get("key") else None
    fields = raw.get("fields")
    context = context if isinstance(context, dict) else {}
    resolver = _FieldResolver(profile, context, raw)

    item = BacklogItem(source=source, external_id=str(issue_id).strip(), key=key, title=key or str(issue_id))
    if key is None:
        item.add_problem("key", "issue has no key", raw.get("key"))
    base_url = context.get("base_url")
    if key and isinstance(base_url, str) and base_url:
        item.url = f"{base_url.rstrip('/')}/browse/{key}"
    if not isinstance(fields, dict):
        item.add_problem("fields", "issue has no fields object", fields)
        return item

    summary = fields.get("summary")
    if isinstance(summary, str) and summary.strip():
        item.title = summary.strip()
    else:
        item.add_problem("summary", "issue has no summary", summary)

    description = fields.get("description")
    if description is not None:
        if isinstance(description, str | dict | list):
            item.description = adf_to_text(description) or None
        else:
            item.add_problem("description", "description is neither text nor ADF", description)

    labels = fields.get("labels")
    if isinstance(labels, list):
        item.labels = [label for label in labels if isinstance(label, str) and label]
    elif labels is not None:
        item.add_problem("labels", "labels is not a list", labels)

    _map_type_and_status(item, fields, profile)
    _map_people_and_dates(item, fields, resolver)
    map_story(item, resolver.text)
    _map_inputs(item, resolver)
    _map_remote_values(item, resolver)

    project = fields.get("project")
    if isinstance(project, dict) and isinstance(project.get("key"), str):
        item.container = project["key"]
    return item


def _map_type_and_status(item: BacklogItem, fields: dict[str, Any], profile: Profile) -> None:
    type_name = _name_of(fields.get("issuetype"))
    item.extra["issue_type"] = type_name
    item_type = profile.item_type(type_name, item.labels)
    item.item_type = item_type if item_type is not None else ItemType.OTHER

    status = fields.get("status")
    status_name = _name_of(status)
    category = status.get("statusCategory") if isinstance(status, dict) else None
    category_key = category.get("key") if isinstance(category, dict) else None
    item.raw_status = status_name
    mapped = profile.status(status_name, category_key if isinstance(category_key, str) else None)
    if mapped is None:
        item.add_problem("status", "no status mapping for this status or its category", status_name)
        mapped = Status.BACKLOG
    item.status = mapped


def _map_people_and_dates(item: BacklogItem, fields: dict[str, Any], resolver: _FieldResolver) -> None:
    assignee = fields.get("assignee")
    if isinstance(assignee, dict):
        name = assignee.get("displayName")
        item.assignee = name if isinstance(name, str) and name else None
    elif assignee is not None:
        item.add_problem("assignee", "assignee is not a user object", assignee)

    for field_name, attr, reader in (
        ("duedate", "due_date", read_date),
        ("created", "created_at", read_datetime),
        ("updated", "updated_at", read_datetime),
    ):
        value, reason = reader(fields.get(field_name))
        if reason is not None:
            item.add_problem(field_name, reason, fields.get(field_name))
        setattr(item, attr, value)

    sprint_value = resolver.value("sprint")
    if sprint_value is None:
        sprint_value = resolver.value_by_schema(_SPRINT_SCHEMA)
    item.sprint = _sprint_name(sprint_value)




def _map_inputs(item: BacklogItem, resolver: _FieldResolver) -> None:
    map_inputs(item, lambda logical: _scalar(resolver.value(logical)))


def _map_remote_values(item: BacklogItem, resolver: _FieldResolver) -> None:
    # A field not configured or not in this Jira has nothing to compare against.
    map_remote_values(item, resolver.value, configured=lambda logical: resolver.field_id(logical) is not None,
                      text=_text, scalar=_scalar)


_TABLES_KEY = "__field_tables__"


def _site_tables(context: dict[str, Any]) -> tuple[dict[str, list[str]], dict[str, str]]:
    """The site's folded field name -> ids and id -> custom type, built once per context (not per issue)."""
    cached = context.get(_TABLES_KEY)
    known = context.get("fields")
    stamp = (id(known), tuple(known) if isinstance(known, dict) else None)
    if isinstance(cached, tuple) and cached[0] == stamp:
        return cached[1], cached[2]
    by_name: dict[str, list[str]] = {}
    schemas: dict[str, str] = {}
    if isinstance(known, dict):
        for field_id, meta in known.items():
            if isinstance(meta, dict) and isinstance(meta.get("name"), str):
                by_name.setdefault(fold(meta["name"]), []).append(str(field_id))
                schema = meta.get("schema")
                custom = schema.get("custom") if isinstance(schema, dict) else meta.get("custom_type")
                if isinstance(custom, str):
                    schemas[str(field_id)] = custom
    try:
        context[_TABLES_KEY] = (stamp, by_name, schemas)
    except TypeError:  # a read-only mapping: fine, just not cached
        pass
    return by_name, schemas


class _FieldResolver:
    """Finds a logical field's value in an issue through the profile's names and the site's field list."""

    def __init__(self, profile: Profile, context: dict[str, Any], raw: dict[str, Any]) -> None:
        self._profile = profile
        fields = raw.get("fields")
        self._values: dict[str, Any] = fields if isinstance(fields, dict) else {}
        by_name, self._schemas = _site_tables(context)
        self._ids_by_name: dict[str, list[str]] = by_name
        # An issue fetched with expand=names carries its own id -> name table; use it for unknown fields.
        names = raw.get("names")
        if isinstance(names, dict):
            self._ids_by_name = {name: list(ids) for name, ids in by_name.items()}
            for field_id, name in names.items():
                if isinstance(name, str):
                    ids = self._ids_by_name.setdefault(fold(name), [])
                    if str(field_id) not in ids:
                        ids.append(str(field_id))

    def field_id(self, logical: str) -> str | None:
        """Returns the id of the first configured name that exists in this Jira, or None."""
        for name in self._profile.field_names(logical):
            ids = self._ids_by_name.get(fold(name))
            if ids:
                return ids[0]
        return None

    def value(self, logical: str) -> Any:
        """Returns the first non-empty value among the fields configured for a logical field."""
        for name in self._profile.field_names(logical):
            for field_id in self._ids_by_name.get(fold(name), []):
                value = self._values.get(field_id)
                if not _is_empty(value):
                    return value
        return None

    def value_by_schema(self, custom_type: str) -> Any:
        for field_id, schema in self._schemas.items():
            if schema == custom_type and not _is_empty(self._values.get(field_id)):
                return self._values[field_id]
        return None

    def text(self, logical: str) -> str | None:
        return _text(self.value(logical))


def _is_empty(value: Any) -> bool:
    return value is None or value == "" or value == [] or value == {}


def _name_of(value: Any) -> str | None:
    if isinstance(value, dict):
        name = value.get("name")
        return name if isinstance(name, str) and name else None
    return value if isinstance(value, str) and value else None


def _scalar(value: Any) -> Any:
    """Unwraps the shapes a Jira custom field can hold a number in: a select option, a one-element list."""
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, dict):
        for attr in ("value", "name"):
            if attr in value:
                return value[attr]
        if value.get("type") == "doc":
            return adf_to_text(value)
    return value


def _text(value: Any) -> str | None:
    """Renders a custom field value as text: string, number, option, user, ADF or a list of those."""
    if _is_empty(value):
        return None
    if isinstance(value, bool):
        return None
    if isinstance(value, str):
        return value.strip() or None
    if isinstance(value, int | float):
        return f"{value:g}"
    if isinstance(value, dict):
        if value.get("type") == "doc":
            return adf_to_text(value).strip() or None
        for attr in ("value", "name", "displayName"):
            if isinstance(value.get(attr), str):
                return value[attr].strip() or None
        return None
    if isinstance(value, list):
        parts = [part for part in (_text(element) for element in value) if part]
        return ", ".join(parts) or None
    return None


def _sprint_name(value: Any) -> str | None:
    """Picks the sprint an issue is in: the active one, else a future one, else the latest closed one."""
    if _is_empty(value):
        return None
    sprints = value if isinstance(value, list) else [value]
    parsed: list[tuple[str, str]] = []  # (state, name)
    for sprint in sprints:
        if isinstance(sprint, dict) and isinstance(sprint.get("name"), str):
            parsed.append((str(sprint.get("state") or "").lower(), sprint["name"]))
        elif isinstance(sprint, str):
            legacy = _LEGACY_SPRINT.search(sprint)
            if legacy is None:
                parsed.append(("", sprint))
                continue
            attrs = dict(pair.split("=", 1) for pair in legacy.group("attrs").split(",") if "=" in pair)
            if attrs.get("name"):
                parsed.append((attrs.get("state", "").lower(), attrs["name"]))
    for wanted in ("active", "future"):
        for state, name in parsed:
            if state == wanted:
                return name
    return parsed[-1][1] if parsed else None


def owned_field_payload(
    values: dict[str, Any], *, profile: Profile, context: dict[str, Any]
) -> dict[str, Any]:
    """Builds the PUT /rest/api/3/issue/{id} body that sets our owned fields, e.g. {"score": 12.5, "rank": 3}.

    Raises ValueError naming the field when a configured owned field does not exist in this Jira.
    """
    resolver = _FieldResolver(profile, context if isinstance(context, dict) else {}, {})
    payload: dict[str, Any] = {}
    for logical, value in values.items():
        if logical not in OWNED_FIELDS:
            owned = ", ".join(OWNED_FIELDS)
            raise ValueError(f"{logical!r} is not a field backlog-sync owns (owned: {owned})")
        names = profile.field_names(logical)
        if not names:
            raise ValueError(f"no Jira field is configured for {logical!r}")
        field_id = resolver.field_id(logical)
        if field_id is None:
            raise ValueError(
                f"the Jira field {names[0]!r} configured for {logical!r} does not exist in this Jira; "
                "create it (or set write_back.create_missing_fields) or change the field name"
            )
        payload[field_id] = _field_value(logical, value, context, field_id)
    return {"fields": payload}


def _field_value(logical: str, value: Any, context: dict[str, Any], field_id: str) -> Any:
    if logical != "kpi_result":
        return value
    meta = (context.get("fields") or {}).get(field_id) if isinstance(context, dict) else None
    schema = meta.get("schema") if isinstance(meta, dict) else None
    custom = schema.get("custom") if isinstance(schema, dict) else None
    # A paragraph (textarea) field takes ADF in v3; a single-line text field takes a plain string.
    if value is not None and isinstance(custom, str) and custom.endswith(":textarea"):
        return text_to_adf(str(value))
    return value


def comment_body(text: str, *, context: dict[str, Any] | None = None) -> dict[str, Any]:
    """Builds the body of a new comment: ADF for Jira Cloud (REST v3), plain wiki text for Data Center (v2)."""
    deployment = (context or {}).get("deployment_type")
    if deployment is not None and deployment != "Cloud":
        return {"body": text}
    return {"body": text_to_adf(text)}


def comment_text(body: Any) -> str:
    """The plain text of a comment body the connector read back (ADF on Cloud, wiki text on Data Center)."""
    return adf_to_text(body) if isinstance(body, dict) else str(body)
