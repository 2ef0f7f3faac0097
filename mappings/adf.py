"""Atlassian Document Format (Jira v3 descriptions, comments, rich text fields) to plain text and back."""

from __future__ import annotations

import re
from typing import Any

# Block nodes end their own line; list items are rendered as "- " bullets so the story parser sees them.
_BLOCKS = {"paragraph", "heading", "codeBlock", "blockquote", "panel", "rule", "mediaSingle", "mediaGroup"}
_MAX_DEPTH = 60  # ADF from a tool is trusted as JSON, not as a sane tree; deep nesting stops here
_BULLET_LINE = re.compile(r"^\s*[-*•]\s+(.*)$")


def adf_to_text(document: Any) -> str:
    """Renders an ADF document (or any node) as plain text; a string passes through, odd nodes are skipped."""
    if document is None:
        return ""
    if isinstance(document, str):
        return document
    lines: list[str] = []
    _render(document, lines, prefix="", depth=0)
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")


def _inline_text(node: Any, depth: int) -> str:
    if depth > _MAX_DEPTH or not isinstance(node, dict):
        return ""
    kind = node.get("type")
    if kind == "text":  # by far the most common node: no attrs needed
        text = node.get("text")
        return text if isinstance(text, str) else ""
    if kind == "hardBreak":
        return "\n"
    attrs = node.get("attrs") if isinstance(node.get("attrs"), dict) else {}
    if kind == "mention":
        return str(attrs.get("text") or "")
    if kind == "emoji":
        return str(attrs.get("text") or attrs.get("shortName") or "")
    if kind in ("inlineCard", "blockCard"):
        return str(attrs.get("url") or "")
    if kind in ("date",):
        return str(attrs.get("timestamp") or "")
    if kind == "status":
        return str(attrs.get("text") or "")
    content = node.get("content")
    if isinstance(content, list):
        return "".join(_inline_text(child, depth + 1) for child in content)
    return ""


def _render(node: Any, lines: list[str], *, prefix: str, depth: int) -> None:
    if depth > _MAX_DEPTH:
        return
    if isinstance(node, list):
        for child in node:
            _render(child, lines, prefix=prefix, depth=depth + 1)
        return
    if not isinstance(node, dict):
        return
    kind = node.get("type")
    content = node.get("content") if isinstance(node.get("content"), list) else []
    if kind in ("bulletList", "orderedList"):
        for index, item in enumerate(content, start=1):
            marker = f"{index}. " if kind == "orderedList" else "- "
            _render_list_item(item, lines, prefix=prefix, marker=marker, depth=depth + 1)
        return
    if kind in ("doc", "blockquote", "panel", "expand", "nestedExpand", "layoutSection", "layoutColumn"):
        for child in content:
            _render(child, lines, prefix=prefix, depth=depth + 1)
        if kind != "doc":
            lines.append("")
        return
    if kind == "table":
        for row in content:
            cells = row.get("content") if isinstance(row, dict) else None
            if isinstance(cells, list):
                lines.append(prefix + " | ".join(_cell_text(cell, depth + 1) for cell in cells))
        lines.append("")
        return
    if kind == "rule":
        lines.append(prefix + "---")
        return
    text = _inline_text(node, depth)
    for line in text.split("\n"):
        lines.append(prefix + line)
    if kind in _BLOCKS:
        lines.append("")


def _cell_text(cell: Any, depth: int) -> str:
    cell_lines: list[str] = []
    _render(cell, cell_lines, prefix="", depth=depth)
    return " ".join(line.strip() for line in cell_lines if line.strip())


def _render_list_item(item: Any, lines: list[str], *, prefix: str, marker: str, depth: int) -> None:
    if depth > _MAX_DEPTH or not isinstance(item, dict):
        return
    children = item.get("content") if isinstance(item.get("content"), list) else []
    first = True
    for child in children:
        if isinstance(child, dict) and child.get("type") in ("bulletList", "orderedList"):
            _render(child, lines, prefix=prefix + "  ", depth=depth + 1)
            continue
        text = _inline_text(child, depth + 1)
        for line in text.split("\n"):
            lines.append(prefix + (marker if first else " " * len(marker)) + line)
            first = False
    if first:
        lines.append(prefix + marker.rstrip())


def text_to_adf(text: str | None) -> dict[str, Any]:
    """Builds an ADF document from text: blank lines separate paragraphs, "- " lines become a bullet list."""
    blocks: list[dict[str, Any]] = []
    paragraph: list[str] = []
    bullets: list[str] = []

    def flush_paragraph() -> None:
        if paragraph:
            blocks.append({"type": "paragraph", "content": _inline_nodes(paragraph)})
            paragraph.clear()

    def flush_bullets() -> None:
        if bullets:
            items = [
                {"type": "listItem", "content": [{"type": "paragraph", "content": _inline_nodes([bullet])}]}
                for bullet in bullets
            ]
            blocks.append({"type": "bulletList", "content": items})
            bullets.clear()

    for line in (text or "").replace("\r\n", "\n").replace("\r", "\n").split("\n"):
        bullet = _BULLET_LINE.match(line)
        if bullet:
            flush_paragraph()
            bullets.append(bullet.group(1))
        elif not line.strip():
            flush_paragraph()
            flush_bullets()
        else:
            flush_bullets()
            paragraph.append(line)
    flush_paragraph()
    flush_bullets()
    return {"type": "doc", "version": 1, "content": blocks}


def _inline_nodes(lines: list[str]) -> list[dict[str, Any]]:
    # ADF forbids empty text nodes, so empty pieces are dropped and lines are joined with hardBreak.
    nodes: list[dict[str, Any]] = []
    for index, line in enumerate(lines):
        if index:
            nodes.append({"type": "hardBreak"})
        if line:
            nodes.append({"type": "text", "text": line})
    return nodes
