"""An emulated Trello over real HTTP: the REST endpoints backlog-sync uses, shaped as Trello answers (validated
against ../shared/specs/trello.json with the documented relaxations in tests/sandbox/test_trello_sandbox_spec.py).

Endpoints (under /1): batch (up to 10 GET routes), boards (get, lists, labels, members, customFields, cards
paged by limit/before, actions paged by since/before), cards (get, update, delete, one custom field item,
several custom field items, comments, actions filtered by type), custom field creation, webhooks (created after
a HEAD check of the callback, as Trello does). Authentication is the key and token query parameters. Rate limits
are Trello's: 100 requests per 10 s per token, 300 per 10 s per API key; over them the answer is 429 with
Trello's body (no Retry-After), and every violation is counted. Every card change is recorded as a board action
and posted, signed, to the webhooks watching the board.

Run it alone with `python -m sandbox.trello --port 8082` (or `backlog-sync sandbox --tool trello`).
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import itertools
import json
import threading
import time
import urllib.parse
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import Response

from sandbox.common import SandboxState, SlidingWindow, WebhookSender, install_sandbox_plumbing
from sandbox.trello_data import MEMBERS, SeedBoard, SeedCard, generated_card, seed_boards

DEFAULT_KEY = "sandbox-trello-api-key-0123456789ab"
DEFAULT_TOKEN = "sandbox-trello-token-0123456789abcdef0123456789abcdef"
DEFAULT_SECRET = "sandbox-trello-application-secret"
MAX_LIMIT = 1000
BATCH_HEADER = "x-sandbox-batch-route"  # marks the routes of a batch, dispatched inside the sandbox

_ids = itertools.count(1)
_ids_lock = threading.Lock()


def new_id(moment: float | None = None) -> str:
    """A Trello id: 8 hex digits of Unix seconds, then a counter, so ids sort by creation time."""
    with _ids_lock:
        return f"{int(moment if moment is not None else time.time()):08x}{next(_ids):016x}"


def trello_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def _json(body: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(body), status_code=status, media_type="application/json")


def _text(message: str, status: int) -> Response:
    return Response(message, status_code=status, media_type="text/plain; charset=utf-8")


@dataclass
class Card:
    id: str
    id_board: str
    id_list: str
    name: str
    desc: str
    pos: float
    short_link: str
    id_short: int
    id_labels: list[str] = field(default_factory=list)
    id_members: list[str] = field(default_factory=list)
    due: str | None = None
    closed: bool = False
    last_activity: str = ""
    items: dict[str, dict[str, Any]] = field(default_factory=dict)  # idCustomField -> {"value": ...}/{"idValue"}
    item_ids: dict[str, str] = field(default_factory=dict)


@dataclass
class Board:
    id: str
    name: str
    short_link: str
    lists: list[dict[str, Any]]
    labels: list[dict[str, Any]]
    custom_fields: list[dict[str, Any]]
    members: list[dict[str, Any]]
    cards: dict[str, Card] = field(default_factory=dict)
    actions: list[dict[str, Any]] = field(default_factory=list)  # oldest first


class TrelloSite:
    """The emulated Trello's state: boards, cards, actions, webhooks, limits. Thread-safe."""

    def __init__(self, *, seed: bool = True, token_limit: tuple[int, float] = (100, 10.0),
                 key_limit: tuple[int, float] = (300, 10.0)) -> None:
        self.lock = threading.RLock()
        self.api_key = DEFAULT_KEY
        self.token = DEFAULT_TOKEN
        self.app_secret = DEFAULT_SECRET
        self.me = {"id": new_id(), "fullName": "Marketing Ops", "username": "marketingops"}
        self.boards: dict[str, Board] = {}
        self.hidden_boards: set[str] = set()  # boards not shared with the token's member: their cards answer 401
        self.by_short: dict[str, str] = {}
        self.cards: dict[str, Card] = {}
        self.webhooks: list[dict[str, Any]] = []
        self.webhook_log: list[dict[str, Any]] = []
        self.edits: list[dict[str, Any]] = []  # every accepted write of a card, for tests
        self.comments: list[dict[str, Any]] = []
        self.violations: Counter[str] = Counter()  # "API_TOKEN_LIMIT_EXCEEDED" -> 429s sent
        self.set_limits(token_limit, key_limit)
        self._webhooks: WebhookSender[tuple[bytes, dict[str, Any], str]] = WebhookSender(
            "trello-webhooks", self._deliver)
        self._short = itertools.count(1)
        if seed:
            for board in seed_boards():
                self.add_board(board)

    # -- limits ------------------------------------------------------------------------------------

    def set_limits(self, token_limit: tuple[int, float], key_limit: tuple[int, float]) -> None:
        """Trello's windows, or time-compressed ones for benchmarks (the figures then say so)."""
        with self.lock:
            self.token_window = SlidingWindow(*token_limit)
            self.key_window = SlidingWindow(*key_limit)

    def admit(self) -> str | None:
        """Counts one request against the token and the key; returns the 429 error code when over a limit."""
        with self.lock:
            now = time.monotonic()
            if not self.key_window.admit(now):
                self.violations["API_KEY_LIMIT_EXCEEDED"] += 1
                return "API_KEY_LIMIT_EXCEEDED"
            if not self.token_window.admit(now):
                self.key_window.calls.pop()  # refused: it does not count against the key either
                self.violations["API_TOKEN_LIMIT_EXCEEDED"] += 1
                return "API_TOKEN_LIMIT_EXCEEDED"
            return None

    # -- boards and cards --------------------------------------------------------------------------

    def add_board(self, seed: SeedBoard) -> Board:
        with self.lock:
            created = time.time() - 90 * 86400
            board_id = new_id(created)
            lists = [{"id": new_id(created), "name": name, "closed": False, "pos": 16384.0 * (i + 1),
                      "idBoard": board_id, "subscribed": False} for i, name in enumerate(seed.lists)]
            labels = [{"id": new_id(created), "idBoard": board_id, "name": name, "color": color, "uses": 0}
                      for name, color in seed.labels]
            fields = []
            for i, (name, kind, options) in enumerate(seed.fields):
                field_id = new_id(created)
                fields.append({
                    "id": field_id, "idModel": board_id, "modelType": "board", "fieldGroup": hashlib.sha256(
                        field_id.encode()).hexdigest(), "display": {"cardFront": True}, "name": name,
                    "pos": 16384 * (i + 1), "type": kind,
                    "options": [{"id": new_id(created), "idCustomField": field_id, "value": {"text": text},
                                 "color": "none", "pos": 16384 * (j + 1)} for j, text in enumerate(options)]})
            members = [{"id": new_id(created), "fullName": full, "username": user, "initials": full[:1]}
                       for full, user in MEMBERS]
            board = Board(board_id, seed.name, seed.short_link, lists, labels, fields, members)
            self.boards[board_id] = board
            self.by_short[seed.short_link] = board_id
            for card in seed.cards:
                self.add_card(board, card, moment=created + 86400)
            return board

    def board(self, ref: str) -> Board | None:
        with self.lock:
            return self.boards.get(ref) or self.boards.get(self.by_short.get(ref, ""))

    def board_named(self, name: str) -> Board:
        return next(b for b in self.boards.values() if b.name == name)

    def add_card(self, board: Board, seed: SeedCard, *, moment: float | None = None, notify: bool = False) -> Card:
        with self.lock:
            list_id = next(lst["id"] for lst in board.lists if lst["name"] == seed.list_name)
            number = next(self._short)
            card = Card(id=new_id(moment), id_board=board.id, id_list=list_id, name=seed.name, desc=seed.desc,
                        pos=16384.0 * (len(board.cards) + 1), short_link=f"c{number:07d}", id_short=number,
                        id_labels=[lbl["id"] for lbl in board.labels if lbl["name"] in seed.labels],
                        id_members=[board.members[seed.member]["id"]] if seed.member is not None else [],
                        due=f"{seed.due}T12:00:00.000Z" if seed.due else None,
                        last_activity=trello_time(datetime.fromtimestamp(moment or time.time(), UTC)))
            for name, value in seed.values.items():
                if value is None:
                    continue
                meta = next(f for f in board.custom_fields if f["name"] == name)
                card.items[meta["id"]] = self._stored_value(meta, value)
                card.item_ids[meta["id"]] = new_id(moment)
            board.cards[card.id] = card
            self.cards[card.id] = card
            self._record(board, "createCard", card, {"list": self._list_ref(board, card.id_list)}, notify=notify)
            return card

    def generate(self, count: int, *, board_name: str = "Marketing backlog") -> None:
        """Adds `count` generated cards to a board (benchmarks): one creation second for all, ids still ordered."""
        board = self.board_named(board_name)
        moment = time.time() - 86400
        for number in range(1, count + 1):
            self.add_card(board, generated_card(number), moment=moment)

    @staticmethod
    def _stored_value(meta: dict[str, Any], value: Any) -> dict[str, Any]:
        """A value as a user typed it -> as Trello stores it: strings for numbers and checkboxes, option ids."""
        if meta["type"] == "list":
            option = next((o for o in meta["options"] if o["value"]["text"] == str(value)), None)
            if option is None:
                raise ValueError(f"{value!r} is not an option of the list field {meta['name']!r}")
            return {"idValue": option["id"]}
        if meta["type"] == "checkbox":
            return {"value": {"checked": "true" if value else "false"}}
        if meta["type"] == "number" and isinstance(value, int | float):
            return {"value": {"number": f"{value:g}"}}
        return {"value": {"text" if meta["type"] == "text" else meta["type"]: str(value)}}

    def find(self, card_id: str) -> Card | None:
        with self.lock:
            card = self.cards.get(card_id)
            if card is None:
                card = next((c for c in self.cards.values() if c.short_link == card_id), None)
            return card

    def field_named(self, board: Board, name: str) -> dict[str, Any]:
        return next(f for f in board.custom_fields if f["name"] == name)

    def value_of(self, card_id: str, name: str) -> str | None:
        """The string Trello holds in a card's custom field (tests): "12.5", an option's text, None."""
        with self.lock:
            card = self.cards[card_id]
            meta = self.field_named(self.boards[card.id_board], name)
            item = card.items.get(meta["id"])
            if item is None:
                return None
            if "idValue" in item:
                return next(o["value"]["text"] for o in meta["options"] if o["id"] == item["idValue"])
            return next(iter(item["value"].values()))

    # -- changes (a user's, through /_sandbox, or ours, through the API) ---------------------------

    def user_sets_field(self, card_id: str, name: str, value: Any, *, member: dict[str, Any] | None = None) -> Card:
        """A user edits a custom field in Trello's UI: stored, recorded as an action, webhooks sent."""
        with self.lock:
            card = self.cards[card_id]
            board = self.boards[card.id_board]
            meta = self.field_named(board, name)
            old = card.items.get(meta["id"])
            if value is None:
                card.items.pop(meta["id"], None)
            else:
                card.items[meta["id"]] = self._stored_value(meta, value)
            self._custom_field_action(board, card, meta, old, member=member or board.members[0])
            return card

    def user_moves_card(self, card_id: str, list_name: str) -> Card:
        with self.lock:
            card = self.cards[card_id]
            board = self.boards[card.id_board]
            before = card.id_list
            card.id_list = next(lst["id"] for lst in board.lists if lst["name"] == list_name)
            self._record(board, "updateCard", card, {"listBefore": self._list_ref(board, before),
                                                     "listAfter": self._list_ref(board, card.id_list),
                                                     "old": {"idList": before}}, member=board.members[0])
            return card

    def archive(self, card_id: str) -> None:
        with self.lock:
            card = self.cards[card_id]
            card.closed = True
            self._record(self.boards[card.id_board], "updateCard", card, {"old": {"closed": False}})

    def delete(self, card_id: str) -> bool:
        with self.lock:
            card = self.cards.pop(card_id, None)
            if card is None:
                return False
            board = self.boards[card.id_board]
            board.cards.pop(card_id, None)
            self._record(board, "deleteCard", card, {"list": self._list_ref(board, card.id_list)})
            return True

    def move_to_board(self, card_id: str, board_id: str) -> None:
        with self.lock:
            card = self.cards[card_id]
            source, target = self.boards[card.id_board], self.boards[board_id]
            source.cards.pop(card_id)
            card.id_board = board_id
            card.id_list = target.lists[0]["id"]
            card.items = {}
            target.cards[card_id] = card
            self._record(source, "moveCardFromBoard", card, {"boardTarget": {"id": board_id}})
            self._record(target, "moveCardToBoard", card, {"boardSource": {"id": source.id}})

    def _custom_field_action(self, board: Board, card: Card, meta: dict[str, Any], old: dict[str, Any] | None,
                             *, member: dict[str, Any]) -> None:
        item = card.items.get(meta["id"])
        data = {
            "customField": {"id": meta["id"], "name": meta["name"], "type": meta["type"]},
            "customFieldItem": {"id": card.item_ids.setdefault(meta["id"], new_id()), "idCustomField": meta["id"],
                                "idModel": card.id, "modelType": "card",
                                "value": (item or {}).get("value"), "idValue": (item or {}).get("idValue")},
            "old": {"value": (old or {}).get("value"), "idValue": (old or {}).get("idValue")},
        }
        self._record(board, "updateCustomFieldItem", card, data, member=member)

    def _list_ref(self, board: Board, list_id: str) -> dict[str, Any]:
        return {"id": list_id, "name": next((lst["name"] for lst in board.lists if lst["id"] == list_id), "")}

    def _record(self, board: Board, kind: str, card: Card, data: dict[str, Any], *,
                member: dict[str, Any] | None = None, notify: bool = True) -> dict[str, Any]:
        member = member or self.me
        now = datetime.now(UTC)
        card.last_activity = trello_time(now)
        action = {
            "id": new_id(), "idMemberCreator": member["id"], "type": kind, "date": trello_time(now),
            "data": {**data, "card": {"id": card.id, "name": card.name, "idShort": card.id_short,
                                      "shortLink": card.short_link, "idList": card.id_list,
                                      "closed": card.closed},
                     "board": {"id": board.id, "name": board.name, "shortLink": board.short_link}},
            "memberCreator": {"id": member["id"], "fullName": member["fullName"], "username": member["username"],
                              "initials": member.get("initials", member["fullName"][:1]), "avatarHash": None},
        }
        board.actions.append(action)
        if notify:
            self._notify(board, card, action)
        return action

    # -- webhooks ----------------------------------------------------------------------------------

    def register_webhook(self, callback_url: str, id_model: str, description: str = "") -> dict[str, Any]:
        with self.lock:
            hook = {"id": new_id(), "description": description, "idModel": id_model, "callbackURL": callback_url,
                    "active": True, "consecutiveFailures": 0, "firstConsecutiveFailDate": None}
            self.webhooks.append(hook)
            return hook

    def _notify(self, board: Board, card: Card, action: dict[str, Any]) -> None:
        hooks = [h for h in self.webhooks if h["active"] and h["idModel"] in (board.id, card.id)]
        for hook in hooks:
            model = self.render_board(board)
            # Trello sends the text as UTF-8, not \u escapes: accents and emoji reach the signature as bytes.
            raw = json.dumps({"model": model, "action": action, "webhook": {
                "id": hook["id"], "description": hook["description"], "idModel": hook["idModel"],
                "active": True}}, ensure_ascii=False).encode("utf-8")
            self._webhooks.send((raw, hook, action["type"]))

    def sign(self, raw: bytes, callback_url: str) -> str:
        """base64(HMAC-SHA1(application secret, body + callback URL)) over UTF-8, as Trello signs today."""
        digest = hmac.new(self.app_secret.encode(), raw + callback_url.encode("utf-8"), hashlib.sha1).digest()
        return base64.b64encode(digest).decode()

    def _deliver(self, delivery: tuple[bytes, dict[str, Any], str]) -> None:
        raw, hook, kind = delivery
        headers = {"Content-Type": "application/json", "X-Trello-Webhook": self.sign(raw, hook["callbackURL"])}
        try:
            status: Any = httpx.post(hook["callbackURL"], content=raw, headers=headers, timeout=5).status_code
        except httpx.HTTPError as exc:
            status = f"error: {exc}"
        with self.lock:
            self.webhook_log.append({"type": kind, "url": hook["callbackURL"], "status": status})

    def wait_for_webhooks(self, timeout: float = 10.0) -> None:
        """Blocks until every queued webhook was delivered (tests)."""
        self._webhooks.wait(timeout)

    # -- rendering ---------------------------------------------------------------------------------

    def render_board(self, board: Board) -> dict[str, Any]:
        return {"id": board.id, "name": board.name, "desc": "", "descData": None, "closed": False,
                "idOrganization": None, "pinned": False, "url": f"https://trello.com/b/{board.short_link}/board",
                "shortUrl": f"https://trello.com/b/{board.short_link}", "shortLink": board.short_link,
                "prefs": {"selfJoin": False, "cardCovers": True},
                "labelNames": {}}

    def render_card(self, card: Card, fields: set[str] | None, custom: bool) -> dict[str, Any]:
        board = self.boards[card.id_board]
        full = {
            "id": card.id, "badges": {"votes": 0, "viewingMemberVoted": False, "subscribed": False,
                                      "fogbugz": "", "checkItems": 0, "checkItemsChecked": 0, "comments": 0,
                                      "attachments": 0, "description": bool(card.desc), "due": card.due,
                                      "dueComplete": False},
            "checkItemStates": [], "closed": card.closed, "dateLastActivity": card.last_activity,
            "desc": card.desc, "descData": None, "due": card.due, "dueComplete": False, "dueReminder": None,
            "idBoard": card.id_board, "idChecklists": [], "idLabels": list(card.id_labels), "idList": card.id_list,
            "idMembers": list(card.id_members), "idMembersVoted": [], "idShort": card.id_short,
            "idAttachmentCover": None, "manualCoverAttachment": False,
            # Trello answers with label objects here, although its spec says ids.
            "labels": [dict(lbl) for lbl in board.labels if lbl["id"] in card.id_labels],
            "name": card.name, "pos": card.pos, "shortLink": card.short_link,
            "shortUrl": f"https://trello.com/c/{card.short_link}",
            "url": f"https://trello.com/c/{card.short_link}/{card.id_short}", "subscribed": False,
        }
        body = full if not fields or "all" in fields else {k: v for k, v in full.items() if k in fields | {"id"}}
        if custom:
            body["customFieldItems"] = [
                {"id": card.item_ids.get(field_id) or new_id(), **item, "idCustomField": field_id,
                 "idModel": card.id, "modelType": "card"}
                for field_id, item in card.items.items()]
        return body


def _fields(request: Request) -> set[str] | None:
    raw = request.query_params.get("fields")
    return {f.strip() for f in raw.split(",") if f.strip()} if raw else None


def _limit(request: Request, default: int = 50) -> int | Response:
    raw = request.query_params.get("limit")
    if raw is None:
        return default
    if not raw.isdigit() or not 0 <= int(raw) <= MAX_LIMIT:
        return _text(f"invalid value for limit: {raw} (0 to {MAX_LIMIT})", 400)
    return int(raw)


async def _body(request: Request) -> dict[str, Any]:
    """py-trello sends JSON bodies; Trello also reads the same parameters from the query string."""
    merged: dict[str, Any] = dict(request.query_params)
    merged.pop("key", None)
    merged.pop("token", None)
    raw = await request.body()
    if raw:
        try:
            data = json.loads(raw)
        except json.JSONDecodeError:
            data = None
        if isinstance(data, dict):
            merged.update(data)
    return merged


def _valid_value(meta: dict[str, Any], value: Any) -> bool:
    """Trello takes a custom field value as a string under the field's type: {"number": "42"}."""
    key = {"checkbox": "checked"}.get(meta["type"], meta["type"])
    if not isinstance(value, dict) or set(value) != {key} or not isinstance(value[key], str):
        return False
    if meta["type"] == "number":
        try:
            float(value[key])
        except ValueError:
            return False
    if meta["type"] == "checkbox":
        return value[key] in ("true", "false")
    return True


def _action_matches(action: dict[str, Any], wanted: list[str]) -> bool:
    """Trello's action filter: "all", a type ("commentCard"), or a type and the field it changed
    ("updateCard:idList")."""
    for kind in wanted:
        name, _, changed = kind.partition(":")
        if kind == "all" or (action["type"] == name and (not changed or changed in (action["data"].get("old") or {}))):
            return True
    return False


def create_app(site: TrelloSite | None = None, state: SandboxState | None = None) -> FastAPI:
    site = site or TrelloSite()
    state = state or SandboxState()
    app = FastAPI(title="backlog-sync sandbox: Trello", docs_url=None, redoc_url=None)
    app.state.site = site
    app.state.sandbox = state
    install_sandbox_plumbing(app, state)

    @app.middleware("http")
    async def authenticate_and_limit(request: Request, call_next):  # noqa: ANN202
        if request.url.path.startswith("/_sandbox") or request.method == "HEAD":
            return await call_next(request)
        key = request.query_params.get("key", "")
        token = request.query_params.get("token", "")
        if not hmac.compare_digest(key, site.api_key):
            return _text("invalid key", 401)
        if not hmac.compare_digest(token, site.token):
            return _text("invalid token", 401)
        refused = None if request.headers.get(BATCH_HEADER) else site.admit()  # a batch's routes ride on it
        if refused is not None:
            state.count_status(429)
            # Trello sends no Retry-After: the client's back-off decides.
            return _json({"error": refused, "message": "Rate limit exceeded"}, 429)
        return await call_next(request)

    def board_or_404(ref: str) -> Board | Response:
        board = site.board(ref)
        return board if board is not None else _text("The requested resource was not found.", 404)

    @app.get("/1/boards/{id}")
    def get_board(id: str) -> Response:  # noqa: A002
        board = board_or_404(id)
        return board if isinstance(board, Response) else _json(site.render_board(board))

    @app.get("/1/boards/{id}/lists")
    def get_lists(id: str, request: Request) -> Response:  # noqa: A002
        board = board_or_404(id)
        if isinstance(board, Response):
            return board
        wanted = request.query_params.get("filter", "open")
        return _json([lst for lst in board.lists if wanted == "all" or not lst["closed"]])

    @app.get("/1/boards/{id}/labels")
    def get_labels(id: str, request: Request) -> Response:  # noqa: A002
        board = board_or_404(id)
        if isinstance(board, Response):
            return board
        limit = _limit(request, 50)
        return limit if isinstance(limit, Response) else _json(board.labels[:limit])

    @app.get("/1/boards/{id}/members")
    def get_members(id: str) -> Response:  # noqa: A002
        board = board_or_404(id)
        return board if isinstance(board, Response) else _json(board.members)

    @app.get("/1/boards/{id}/customFields")
    def get_custom_fields(id: str) -> Response:  # noqa: A002
        board = board_or_404(id)
        return board if isinstance(board, Response) else _json(board.custom_fields)

    @app.get("/1/boards/{id}/cards")
    def get_cards(id: str, request: Request) -> Response:  # noqa: A002
        board = board_or_404(id)
        if isinstance(board, Response):
            return board
        limit = _limit(request, MAX_LIMIT)
        if isinstance(limit, Response):
            return limit
        before = request.query_params.get("before")
        if state.flags.get("repeat_page") and before:
            before = None  # a broken server answering the first page again, for the loop-detection contract
        since = request.query_params.get("since")
        custom = request.query_params.get("customFieldItems") == "true"
        fields = _fields(request)
        with site.lock:
            cards = sorted((c for c in board.cards.values() if not c.closed and (before is None or c.id < before)
                            and (since is None or c.id > since)), key=lambda c: c.id, reverse=True)[:limit]
            return _json([site.render_card(card, fields, custom) for card in cards])

    @app.get("/1/boards/{boardId}/actions")
    def get_actions(boardId: str, request: Request) -> Response:  # noqa: N803
        board = board_or_404(boardId)
        if isinstance(board, Response):
            return board
        limit = _limit(request, 50)
        if isinstance(limit, Response):
            return limit
        kinds = {k for k in request.query_params.get("filter", "all").split(",") if k}
        since, before = request.query_params.get("since"), request.query_params.get("before")
        with site.lock:
            found = [a for a in reversed(board.actions)
                     if ("all" in kinds or a["type"] in kinds) and (since is None or a["id"] > since)
                     and (before is None or a["id"] < before)][:limit]
            return _json(found)

    @app.get("/1/cards/{id}")
    def get_card(id: str, request: Request) -> Response:  # noqa: A002
        card = site.find(id)
        if card is None:
            return _text("The requested resource was not found.", 404)
        if card.id_board in site.hidden_boards:
            # Trello answers 401 (not 403/404) for a card on a board not shared with the token's member.
            return _text("unauthorized card permission requested", 401)
        with site.lock:
            return _json(site.render_card(card, _fields(request), request.query_params.get("customFieldItems")
                                          == "true"))

    @app.put("/1/cards/{id}")
    async def update_card(id: str, request: Request) -> Response:  # noqa: A002
        card = site.find(id)
        if card is None:
            return _text("The requested resource was not found.", 404)
        body = await _body(request)
        with site.lock:
            board = site.boards[card.id_board]
            old: dict[str, Any] = {}
            if "pos" in body:
                pos = body["pos"]
                if pos in ("top", "bottom"):
                    positions = [c.pos for c in board.cards.values() if c.id_list == card.id_list] or [0.0]
                    pos = min(positions) / 2 if pos == "top" else max(positions) + 16384
                try:
                    pos = float(pos)
                except (TypeError, ValueError):
                    return _text("invalid value for pos", 400)
                if pos != card.pos:
                    old["pos"], card.pos = card.pos, pos
            for key, attr in (("name", "name"), ("desc", "desc"), ("idList", "id_list")):
                if key in body and body[key] != getattr(card, attr):
                    old[key] = getattr(card, attr)
                    setattr(card, attr, body[key])
            if "closed" in body:
                closed = str(body["closed"]).lower() == "true"
                if closed != card.closed:
                    old["closed"], card.closed = card.closed, closed
            site.edits.append({"card": card.id, "kind": "card", "body": body})
            if old:
                site._record(board, "updateCard", card, {"old": old})
            return _json(site.render_card(card, None, False))

    @app.delete("/1/cards/{id}")
    def delete_card(id: str) -> Response:  # noqa: A002
        return _json({"limits": {}}) if site.delete(id) else _text("The requested resource was not found.", 404)

    def _apply_items(card: Card, entries: list[Any]) -> Response | None:
        board = site.boards[card.id_board]
        fields = {f["id"]: f for f in board.custom_fields}
        changes = []
        for entry in entries:
            if not isinstance(entry, dict) or entry.get("idCustomField") not in fields:
                return _text("invalid value for idCustomField", 400)
            meta = fields[entry["idCustomField"]]
            if "idValue" in entry:
                new: dict[str, Any] | None = {"idValue": entry["idValue"]} if entry["idValue"] else None
                if new and entry["idValue"] not in {o["id"] for o in meta["options"]}:
                    return _text("invalid value for idValue", 400)
            elif entry.get("value") in ("", None, {}):
                new = None  # Trello clears a field given an empty value
            elif _valid_value(meta, entry.get("value")):
                new = {"value": dict(entry["value"])}
            else:
                return _text("Invalid custom field item value.", 400)
            changes.append((meta, new))
        for meta, new in changes:
            old = card.items.get(meta["id"])
            if new == old:
                continue
            if new is None:
                card.items.pop(meta["id"], None)
            else:
                card.items[meta["id"]] = new
            site._custom_field_action(board, card, meta, old, member=site.me)
        return None

    @app.put("/1/cards/{idCard}/customFields")
    async def update_items(idCard: str, request: Request) -> Response:  # noqa: N803
        card = site.find(idCard)
        if card is None:
            return _text("The requested resource was not found.", 404)
        body = await _body(request)
        entries = body.get("customFieldItems")
        if not isinstance(entries, list) or not entries:
            return _text("invalid value for customFieldItems", 400)
        with site.lock:
            refused = _apply_items(card, entries)
            if refused is not None:
                return refused
            site.edits.append({"card": card.id, "kind": "customFields", "body": body})
        return _json({})

    @app.put("/1/cards/{idCard}/customField/{idCustomField}/item")
    async def update_item(idCard: str, idCustomField: str, request: Request) -> Response:  # noqa: N803
        card = site.find(idCard)
        if card is None:
            return _text("The requested resource was not found.", 404)
        body = await _body(request)
        with site.lock:
            refused = _apply_items(card, [{**body, "idCustomField": idCustomField}])
            if refused is not None:
                return refused
            site.edits.append({"card": card.id, "kind": "customField", "body": body})
            item = card.items.get(idCustomField) or {}
            return _json({"id": card.item_ids.setdefault(idCustomField, new_id()), **item,
                          "idCustomField": idCustomField, "idModel": card.id, "modelType": "card"})

    @app.get("/1/cards/{id}/actions")
    def get_card_actions(id: str, request: Request) -> Response:  # noqa: A002
        card = site.find(id)
        if card is None:
            return _text("The requested resource was not found.", 404)
        # The spec's default filter, and its paging: 50 actions a page, newest first, pages 0 to 19.
        wanted = [k.strip() for k in request.query_params.get("filter", "commentCard, updateCard:idList").split(",")
                  if k.strip()]
        try:
            page = int(request.query_params.get("page", "0"))
        except ValueError:
            return _text("invalid value for page", 400)
        if not 0 <= page <= 19:
            return _text("invalid value for page", 400)
        with site.lock:
            found = [a for a in reversed(site.boards[card.id_board].actions)
                     if a["data"]["card"]["id"] == card.id and _action_matches(a, wanted)]
            return _json(found[page * 50:(page + 1) * 50])

    @app.post("/1/cards/{id}/actions/comments")
    async def add_comment(id: str, request: Request) -> Response:  # noqa: A002
        card = site.find(id)
        if card is None:
            return _text("The requested resource was not found.", 404)
        body = await _body(request)
        text = body.get("text")
        if not isinstance(text, str) or not text.strip():
            return _text("invalid value for text", 400)
        with site.lock:
            action = site._record(site.boards[card.id_board], "commentCard", card, {"text": text})
            site.comments.append({"card": card.id, "text": text})
            return _json(action)

    @app.post("/1/customFields")
    async def create_custom_field(request: Request) -> Response:
        body = await _body(request)
        board = site.board(str(body.get("idModel", "")))
        if board is None or body.get("modelType") != "board":
            return _text("invalid value for idModel", 400)
        kind = body.get("type")
        if kind not in ("number", "text", "checkbox", "date", "list") or not body.get("name"):
            return _text("invalid value for type or name", 400)
        with site.lock:
            field_id = new_id()
            meta = {"id": field_id, "idModel": board.id, "modelType": "board",
                    "fieldGroup": hashlib.sha256(field_id.encode()).hexdigest(),
                    "display": {"cardFront": bool(body.get("display_cardFront", True))}, "name": str(body["name"]),
                    "pos": 16384 * (len(board.custom_fields) + 1), "type": kind, "options": []}
            board.custom_fields.append(meta)
            return _json(meta)

    @app.post("/1/webhooks")
    @app.post("/1/webhooks/")
    async def create_webhook(request: Request) -> Response:
        body = await _body(request)
        callback, model = body.get("callbackURL"), str(body.get("idModel", ""))
        if not isinstance(callback, str) or not callback.startswith(("http://", "https://")):
            return _text("invalid value for callbackURL", 400)
        if site.board(model) is None and site.find(model) is None:
            return _text("invalid value for idModel", 400)
        try:  # Trello checks the callback with HEAD and creates nothing unless it answers 200
            checked = httpx.head(callback, timeout=5).status_code
        except httpx.HTTPError as exc:
            return _text(f"URL ({callback}) could not be reached: {type(exc).__name__}", 400)
        if checked != 200:
            return _text(f"URL ({callback}) did not return 200 status code but {checked}", 400)
        board = site.board(model)
        hook = site.register_webhook(callback, board.id if board else model, str(body.get("description") or ""))
        return _json(hook)

    @app.get("/1/members/me")
    def get_me() -> Response:
        return _json(dict(site.me))  # the token's member: what a cheap "is this token alive" call reads

    @app.get("/1/batch")
    async def batch(request: Request) -> Response:
        """Up to 10 GET routes in one request, answered in order as {"<status>": body}. Trello's reference: batching
        reduces "the volume of calls you are making to the API": the batch counts as one request."""
        routes = [route for route in request.query_params.get("urls", "").split(",") if route]
        if not routes or len(routes) > 10:
            return _text("invalid value for urls: 1 to 10 routes", 400)
        answers: list[dict[str, Any]] = []
        auth = {"key": request.query_params.get("key", ""), "token": request.query_params.get("token", "")}
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://trello.sandbox") as client:
            for route in routes:
                path, _, query = route.partition("?")
                if not path.startswith("/") or path.startswith(("/1/", "/batch")):
                    answers.append({"400": "invalid route"})
                    continue
                params = {**dict(urllib.parse.parse_qsl(query)), **auth}
                inner = await client.get("/1" + path, params=params, headers={BATCH_HEADER: "1"})
                kind = inner.headers.get("content-type", "")
                answers.append({str(inner.status_code): inner.json() if kind.startswith("application/json")
                                else inner.text})
        return _json(answers)

    # -- sandbox controls ----------------------------------------------------------------------------

    @app.post("/_sandbox/edit", include_in_schema=False)
    async def user_edit(request: Request) -> dict[str, Any]:
        body = await request.json()
        card = site.user_sets_field(str(body["card"]), str(body["field"]), body.get("value"))
        return {"card": card.id, "value": site.value_of(card.id, str(body["field"]))}

    @app.post("/_sandbox/generate", include_in_schema=False)
    async def generate(request: Request) -> dict[str, Any]:
        body = await request.json()
        site.generate(int(body["count"]), board_name=str(body.get("board", "Marketing backlog")))
        return {"cards": len(site.cards)}

    @app.post("/_sandbox/limits", include_in_schema=False)
    async def limits(request: Request) -> dict[str, Any]:
        body = await request.json()
        site.set_limits(tuple(body.get("token", (100, 10.0))), tuple(body.get("key", (300, 10.0))))  # type: ignore[arg-type]
        return {"ok": True}

    @app.get("/_sandbox/violations", include_in_schema=False)
    def violations() -> dict[str, Any]:
        return {"violations": dict(site.violations), "cards": len(site.cards), "edits": len(site.edits),
                "webhooks": len(site.webhooks)}

    return app


def main(argv: list[str] | None = None) -> None:
    """Serves the emulated Trello until interrupted."""
    import uvicorn

    parser = argparse.ArgumentParser(description="backlog-sync's emulated Trello")
    parser.add_argument("--port", type=int, default=8082)
    parser.add_argument("--generate", type=int, default=0, help="also add N generated cards to 'Marketing backlog'")
    parser.add_argument("--window", type=float, default=10.0,
                        help="rate-limit window in seconds (10 is Trello's; smaller compresses time for benchmarks)")
    args = parser.parse_args(argv)
    site = TrelloSite(token_limit=(100, args.window), key_limit=(300, args.window))
    if args.generate:
        site.generate(args.generate)
    print(f"emulated Trello on http://127.0.0.1:{args.port} (key {site.api_key}, token {site.token}, "  # noqa: T201
          f"app secret {site.app_secret}); {len(site.cards)} cards on {len(site.boards)} boards", flush=True)
    uvicorn.run(create_app(site), host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
