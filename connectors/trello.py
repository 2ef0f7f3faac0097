"""Trello connector on py-trello (import `trello`): the configured boards' cards, lists, labels, members and
custom fields, incremental sync from board actions, write-back into board custom fields, comments, webhooks.

Transport. py-trello builds every URL on https://api.trello.com/1 and sends it through the `http_service` it is
given. It gets the project's session (`make_session`): the adapter maps that fixed base onto the configured
base URL and applies the timeout, the token's and the API key's rate limits, the retry policy and the typed
errors to every call, py-trello's own and the direct ones (`fetch_json` with paths py-trello has no method
for). Key and token travel as query parameters (py-trello's key/token mode: the token goes in `api_secret`);
error messages and logs carry URLs without their query string, so neither ever appears there.

Where py-trello lacks what we need, the call goes through `TrelloClient.fetch_json` on that same transport:
- several cards in one call, GET /1/batch (ten routes a call: a burst of webhooks costs a tenth of the budget);
- a board's cards paged with `limit`/`before` and `customFieldItems=true` (`Board.get_cards` reads one page
  of at most 1,000 and builds Card objects, which a 10,000-card board does not need);
- board actions paged with `since`/`before` (`Board.fetch_actions` takes no `before` for the next page);
- several custom fields of one card in one call, PUT /cards/{id}/customFields (py-trello's
  `Card.set_custom_field` writes one field a call, on the singular /card/ path);
- POST /webhooks (py-trello's `create_hook` posts a form to trello.com and raises a bare Exception);
- a card's latest comments, GET /1/cards/{id}/actions?filter=commentCard (py-trello's `Card.fetch_comments`
  sends the same GET but needs a Card object built on a Board object, which a bare card id from the outbox is not).

Incremental sync. The cursor is JSON: {"boards": {board id: last action id}}. A full read first notes the
board's newest action id, then pages the cards; anything changed during the scan is an action after that id,
read again next time. An incremental read pages the actions after the stored id (ids grow with time), and
re-reads the cards they name: ten a call through GET /1/batch when few (at most 50), the whole board when many
(a changed card missing from it is looked for on the other configured boards before it is removed). Archived,
deleted and moved-out cards are left out of what `fetch` returns (the service removes them); `list_ids` feeds
the reconcile.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from typing import Any, ClassVar

from trello import ResourceUnavailable, TrelloClient

from connectors.base import (
    DEFAULT_TIMEOUT,
    AuthError,
    ConnectorError,
    FatalError,
    FullReadListing,
    LimiterGroup,
    Page,
    Paginator,
    RetryPolicy,
    SkippableError,
    WebhookEvent,
    credential_fingerprint,
    error_for_status,
    make_session,
    shared_limiter,
    with_last,
)
from connectors.trello_webhooks import CARD_ACTIONS, parse_webhook, verify_webhook

log = logging.getLogger("backlog_sync.connectors.trello")

VENDOR = "trello"
TRELLO_API = "https://api.trello.com"  # where py-trello sends everything
MAX_PAGE = 1000  # Trello's largest `limit` for cards and actions
TOKEN_LIMIT = (100, 10.0)  # Trello: 100 requests per 10 s per token
KEY_LIMIT = (300, 10.0)  # and 300 per 10 s per API key, whatever the token
# Our clock starts a window when a call leaves; Trello's when it arrives. Stretching our windows by 5% keeps a
# call that left a little late from landing inside Trello's previous window.
WINDOW_MARGIN = 1.05
FETCH_ONE_BY_ONE = 50  # more changed cards than this: page the board instead of /1/batch calls of ten
CARD_FIELDS = "id,name,desc,idBoard,idList,idLabels,idMembers,labels,due,dateLastActivity,pos,closed,shortLink,url"
ACTION_FILTER = ",".join(sorted(CARD_ACTIONS))
NO_ACTION = "0" * 24
BATCH = 10  # GET /1/batch takes at most 10 routes
_CARD_REF = re.compile(r"[0-9a-fA-F]{24}|[A-Za-z0-9]{8}")  # an id or a short link; nothing else reaches a URL


def parse_cursor(cursor: str | None) -> dict[str, str]:
    """Reads the stored cursor ({"boards": {id: last action id}}); anything else means "read everything"."""
    if not cursor:
        return {}
    try:
        data = json.loads(cursor)
    except json.JSONDecodeError:
        log.warning("trello: stored cursor %r is not JSON; reading everything", cursor[:80])
        return {}
    boards = data.get("boards") if isinstance(data, dict) else None
    if not isinstance(boards, dict):
        return {}
    return {str(k): str(v) for k, v in boards.items() if isinstance(v, str) and v}


def format_cursor(boards: dict[str, str]) -> str:
    return json.dumps({"boards": dict(sorted(boards.items()))}, separators=(",", ":"))


class TrelloConnector:
    """Reads and writes the cards of the configured Trello boards."""

    kind: ClassVar[str] = "trello"
    primary_key: ClassVar[str] = "id"
    replication_key: ClassVar[str] = "actions.id"
    page_size: ClassVar[int] = MAX_PAGE

    def __init__(
        self,
        *,
        base_url: str,
        api_key: str,
        token: str,
        boards: list[str],
        page_size: int = MAX_PAGE,
        set_position: bool = False,
        create_fields: list[str] | None = None,
        policy: RetryPolicy | None = None,
        token_limit: tuple[int, float] | None = None,
        key_limit: tuple[int, float] | None = None,
        timeout: tuple[float, float] = DEFAULT_TIMEOUT,
    ) -> None:
        if not boards:
            raise ValueError("a Trello source needs at least one board")
        self.base_url = base_url.rstrip("/")
        self.board_refs = list(dict.fromkeys(boards))
        self.page_size = max(1, min(MAX_PAGE, page_size))  # type: ignore[misc]
        self.set_position = set_position
        self.create_fields = [name for name in (create_fields or []) if name]
        # One budget per token and one per API key for the whole process: two sources sharing a key share it.
        # The module's TOKEN_LIMIT/KEY_LIMIT are read here, not at import, so tests can compress time.
        token_limit = token_limit or TOKEN_LIMIT
        key_limit = key_limit or KEY_LIMIT
        self.limiter = LimiterGroup([
            shared_limiter(f"trello-token:{credential_fingerprint(token)}",
                           [(token_limit[0], token_limit[1] * WINDOW_MARGIN)]),
            shared_limiter(f"trello-key:{credential_fingerprint(api_key)}",
                           [(key_limit[0], key_limit[1] * WINDOW_MARGIN)]),
        ])
        # Trello's 429 has no Retry-After and its window is 10 s: wait a whole window, not 0.5 s, 1 s, 2 s...
        self._session = make_session(vendor=VENDOR, policy=policy or RetryPolicy(), limiter=self.limiter,
                                     timeout=timeout, rebase=(TRELLO_API, self.base_url),
                                     retry_after_429=token_limit[1] * WINDOW_MARGIN)
        # py-trello's key/token mode: without token/token_secret it sends key= and token= (from api_secret).
        self._client = TrelloClient(api_key=api_key, api_secret=token, http_service=self._session)
        self._boards: dict[str, dict[str, Any]] | None = None  # board id -> what describe() read
        self._listed = FullReadListing()  # the ids a full read just saw, for its reconcile
        self.calls = 0

    # -- metadata ----------------------------------------------------------------------------------

    def describe(self) -> dict[str, Any]:
        """Reads each board's id, lists, labels, members and custom fields (creating our number fields when asked)."""
        boards: dict[str, dict[str, Any]] = {}
        for ref in self.board_refs:
            try:
                board = self._call(self._client.get_board, ref)
            except SkippableError as exc:
                # A board id that is wrong, deleted or not shared with the token: the operator must fix the config.
                raise FatalError(f"trello: board {ref!r} (sources[].boards) cannot be read with this token: "
                                 f"HTTP {exc.status}; check the id or short link and that the board is shared "
                                 "with the token's member", status=exc.status, vendor=VENDOR) from exc
            custom_fields = self._custom_fields(board)
            if self.create_fields:
                custom_fields = self._create_missing_fields(board, custom_fields)
            boards[board.id] = {
                "name": board.name,
                "url": board.url,
                "lists": {lst.id: {"name": lst.name, "closed": bool(lst.closed), "pos": lst.pos}
                          for lst in self._call(board.get_lists, "all")},
                "labels": {label.id: {"name": label.name, "color": label.color}
                           for label in self._call(board.get_labels, "all", 1000)},
                "members": {member.id: {"name": member.full_name, "username": member.username}
                            for member in self._call(board.get_members)},
                "custom_fields": custom_fields,
            }
        self._boards = boards
        return {"base_url": self.base_url, "set_position": self.set_position, "boards": boards}

    def _custom_fields(self, board: Any) -> dict[str, dict[str, Any]]:
        raw = self._json(f"/boards/{board.id}/customFields")
        fields: dict[str, dict[str, Any]] = {}
        for field in raw if isinstance(raw, list) else []:
            if not isinstance(field, dict) or not field.get("id"):
                continue
            display = field.get("display") if isinstance(field.get("display"), dict) else {}
            # Trello answers with a top-level "name"; the published spec puts it under "display".
            name = field.get("name") if isinstance(field.get("name"), str) else display.get("name")
            options = {str(o.get("id")): _option_text(o) for o in field.get("options") or display.get("options") or []
                       if isinstance(o, dict) and o.get("id")}
            fields[str(field["id"])] = {"name": name, "type": field.get("type"), "options": options}
        return fields

    def _create_missing_fields(self, board: Any, fields: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """write_back.create_missing_fields: creates our number fields missing on a board, and says so."""
        present = {str(meta.get("name") or "").casefold() for meta in fields.values()}
        for name in self.create_fields:
            if name.casefold() in present:
                continue
            created = self._json("/customFields", method="POST", body={
                "idModel": board.id, "modelType": "board", "name": name, "type": "number", "pos": "bottom",
                "display_cardFront": True})
            log.warning("trello: created the number custom field %r on board %r (write_back.create_missing_fields)",
                        name, board.name)
            fields[str(created["id"])] = {"name": name, "type": "number", "options": {}}
        return fields

    def board_ids(self) -> list[str]:
        if self._boards is None:
            self.describe()
        assert self._boards is not None
        return list(self._boards)

    # -- reading -----------------------------------------------------------------------------------

    def pull(self, cursor: str | None, *, full: bool = False) -> Iterator[Page]:
        """Yields pages of cards changed since the cursor (every open card when full or no cursor)."""
        configured = self.board_ids()
        # Boards no longer configured drop out of the cursor; a board added later is read in full.
        state = {} if full else {b: v for b, v in parse_cursor(cursor).items() if b in configured}
        read_here: set[str] = set()
        if full:
            self._listed.begin()
        else:
            self._listed.forget()
        for board_id in configured:
            since = state.get(board_id)
            if since is None:
                newest = self._newest_action(board_id)  # before the scan: what changes during it is read again
                for records, last in with_last(self._card_pages(board_id)):
                    if full:
                        self._listed.add(card["id"] for card in records)
                    if last:
                        state[board_id] = newest
                    # The board's cursor moves only with its last page: a crash mid-board re-reads the board.
                    yield Page(records=records, cursor=format_cursor(state) if last else None)
                continue
            touched, deleted, newest = self._actions_since(board_id, since)
            state[board_id] = newest or since
            if len(touched) > FETCH_ONE_BY_ONE:
                # A card already read on an earlier board (it moved there) is not read, nor removed, again.
                wanted = set(touched) - read_here
                found: set[str] = set()
                for records, last in with_last(self._card_pages(board_id)):
                    keep = [card for card in records if card["id"] in wanted]
                    found.update(card["id"] for card in keep)
                    gone: list[str] = []
                    if last:
                        # A changed card no longer on this board may have moved to another configured board:
                        # it keeps its item. Only what no configured board has is removed.
                        elsewhere = self.fetch(sorted(wanted - found)) if wanted - found else []
                        keep.extend(elsewhere)
                        found.update(card["id"] for card in elsewhere)
                        gone = sorted((wanted - found) | deleted)
                    yield Page(records=keep, cursor=format_cursor(state) if last else None, deleted_ids=gone)
                read_here.update(wanted)
                continue
            # A card moved between two configured boards shows on both; it is read once.
            wanted = [card_id for card_id in touched if card_id not in read_here]
            records = self.fetch(wanted) if wanted else []
            found_ids = {card["id"] for card in records}
            read_here.update(wanted)
            yield Page(records=records, cursor=format_cursor(state),
                       deleted_ids=sorted((set(wanted) - found_ids) | deleted))
        if full:
            # A full read has just listed every open card: the reconcile that follows it uses that list
            # instead of paging every board a second time (once, and only right after).
            self._listed.finish()

    def _card_pages(self, board_id: str, *, fields: str = CARD_FIELDS,
                    custom: bool = True) -> Iterator[list[dict[str, Any]]]:
        """Pages a board's open cards by `before` (card ids grow with creation time); never stops at 1,000.

        With `before`, Trello answers the newest `limit` cards older than it (the captured
        board_cards_before_paging_page2.json: before the newest of six cards, limit 1, came the second newest),
        so the next page starts before the oldest card of this one, whatever order the page is in."""
        paginator = Paginator(VENDOR)
        while not paginator.finished:
            query: dict[str, Any] = {"limit": self.page_size, "fields": fields}
            if custom:
                query["customFieldItems"] = "true"
            if paginator.token:
                query["before"] = paginator.token
            body = self._json(f"/boards/{board_id}/cards", query=query)
            if not isinstance(body, list):
                raise ConnectorError(f"trello: the cards of board {board_id} are not a list", vendor=VENDOR)
            cards = [card for card in body if isinstance(card, dict) and isinstance(card.get("id"), str)]
            paginator.advance(min(card["id"] for card in cards) if len(body) >= self.page_size and cards else None)
            yield cards

    def _newest_action(self, board_id: str) -> str:
        body = self._json(f"/boards/{board_id}/actions", query={"limit": 1, "filter": ACTION_FILTER})
        actions = body if isinstance(body, list) else []
        ids = [a["id"] for a in actions if isinstance(a, dict) and isinstance(a.get("id"), str)]
        # A board without card actions yet: every future action id sorts after this one.
        return max(ids) if ids else NO_ACTION

    def _actions_since(self, board_id: str, since: str) -> tuple[list[str], set[str], str | None]:
        """Pages the card actions after `since`; returns (cards touched, cards deleted, newest action id)."""
        touched: dict[str, None] = {}
        deleted: set[str] = set()
        newest: str | None = None
        paginator = Paginator(VENDOR)
        while not paginator.finished:
            query: dict[str, Any] = {"since": since, "limit": MAX_PAGE, "filter": ACTION_FILTER}
            if paginator.token:
                query["before"] = paginator.token
            body = self._json(f"/boards/{board_id}/actions", query=query)
            actions = [a for a in body if isinstance(a, dict) and isinstance(a.get("id"), str)] \
                if isinstance(body, list) else []
            for action in actions:
                if action["id"] <= since:
                    continue  # `since` is exclusive at Trello; a server that includes it costs nothing here
                newest = action["id"] if newest is None or action["id"] > newest else newest
                card = ((action.get("data") or {}).get("card") or {}) if isinstance(action.get("data"), dict) else {}
                card_id = card.get("id") if isinstance(card, dict) else None
                if not isinstance(card_id, str):
                    continue
                if action.get("type") == "deleteCard":
                    deleted.add(card_id)
                else:
                    touched[card_id] = None
            paginator.advance(min(a["id"] for a in actions) if len(actions) >= MAX_PAGE else None)
        return [card for card in touched if card not in deleted], deleted, newest

    def list_ids(self) -> Iterator[str]:
        """Yields the id of every open card on the configured boards (ids only, 1,000 a call)."""
        listed = self._listed.take()
        if listed is not None:
            yield from listed
            return
        for board_id in self.board_ids():
            for cards in self._card_pages(board_id, fields="id", custom=False):
                for card in cards:
                    yield card["id"]

    def fetch(self, external_ids: list[str]) -> list[dict[str, Any]]:
        """Reads cards by id, ten a call through GET /1/batch; deleted, archived and moved-out cards are left out.

        One card is read with GET /1/cards/{id}. Inside a batch URL a comma separates the routes, so the batched
        reads ask for every card field (no `fields` list) with customFieldItems."""
        boards = set(self.board_ids())
        ids = [i for i in dict.fromkeys(str(x) for x in external_ids) if _CARD_REF.fullmatch(i)]
        found = []
        for start in range(0, len(ids), BATCH):
            chunk = ids[start:start + BATCH]
            for card in self._read_cards(chunk):
                if not card.get("closed") and card.get("idBoard") in boards:
                    found.append(card)
        return found

    def _read_cards(self, ids: list[str]) -> list[dict[str, Any]]:
        if len(ids) == 1:
            try:
                card = self._json(f"/cards/{ids[0]}", query={"fields": CARD_FIELDS, "customFieldItems": "true"})
            except SkippableError as exc:
                if exc.status in (400, 404):
                    return []  # deleted (or never a card): it leaves the backlog
                raise
            except AuthError as exc:
                self._out_of_sight(ids[0], exc)
                return []
            return [card] if isinstance(card, dict) else []
        answers = self._json("/batch", query={"urls": ",".join(f"/cards/{i}?customFieldItems=true" for i in ids)})
        if not isinstance(answers, list) or len(answers) != len(ids):
            raise ConnectorError(f"trello: /batch answered {type(answers).__name__} for {len(ids)} cards",
                                 vendor=VENDOR)
        cards = []
        credential_checked = False
        for card_id, answer in zip(ids, answers, strict=True):
            # Each route's answer is keyed by its status: {"200": card} or {"404": "..."}.
            status, body = next(iter(answer.items())) if isinstance(answer, dict) and answer else ("?", None)
            if status == "200" and isinstance(body, dict):
                cards.append(body)
            elif status in ("401", "403"):
                error = error_for_status(int(status), headers=None, body=str(body)[:200], vendor=VENDOR,
                                         where=f"/batch (card {card_id})")
                assert isinstance(error, AuthError)
                self._out_of_sight(card_id, error, checked=credential_checked)
                credential_checked = True  # the token answered once: the batch's other refusals are cards too
            elif status not in ("400", "404"):
                # A 200 without a card, or an unreadable status, is a bad answer from Trello's side.
                code = int(status) if str(status).isdigit() and int(status) >= 400 else 502
                error = error_for_status(code, headers=None, body=str(body)[:200], vendor=VENDOR,
                                         where=f"/batch (card {card_id})")
                assert error is not None  # code is at least 400
                raise error
        return cards

    def _out_of_sight(self, card_id: str, error: AuthError, *, checked: bool = False) -> None:
        """A card read refused with 401/403: Trello answers 401 for a card on a board the token cannot see.

        One cheap call (GET /1/members/me) tells the two apart: if the token still works, the card is out of
        scope (not on a board shared with it, so on none of ours) and is left out; if not, the AuthError stands
        and the source is paused for new credentials."""
        if not checked:
            try:
                self._json("/members/me", query={"fields": "id"})
            except AuthError:
                raise error from None
        log.warning("trello: card %s cannot be read with this token (HTTP %s) although the token works: "
                    "it is on a board the token cannot see, so it is left out", card_id, error.status)

    # -- writing -----------------------------------------------------------------------------------

    def update_item(self, external_id: str, payload: dict[str, Any]) -> None:
        """Sets our custom fields in one call (PUT /cards/{id}/customFields) and, with set_position, the card's pos."""
        items = payload.get("customFieldItems") or []
        if items:
            self._json(f"/cards/{external_id}/customFields", method="PUT", body={"customFieldItems": items})
        if self.set_position and payload.get("pos") is not None:
            self._json(f"/cards/{external_id}", method="PUT", body={"pos": payload["pos"]})

    def add_comment(self, external_id: str, body: Any) -> None:
        """POST /cards/{id}/actions/comments with the body mappings.trello.comment_body built ({"text": ...})."""
        self._json(f"/cards/{external_id}/actions/comments", method="POST", body=body)

    def recent_comments(self, external_id: str, limit: int) -> list[Any]:
        """The texts of a card's latest comments, newest first: GET /1/cards/{id}/actions?filter=commentCard.

        Trello answers the newest actions first, 50 a page (the spec's `page` parameter; it lists no `limit`),
        so the first page holds the 50 latest comments, which is what a check after a crash needs."""
        if not _CARD_REF.fullmatch(str(external_id)):
            return []
        try:
            body = self._json(f"/cards/{external_id}/actions", query={"filter": "commentCard"})
        except SkippableError as exc:
            if exc.status in (400, 404):
                return []  # the card is gone: it has no comments to compare with
            raise
        actions = body if isinstance(body, list) else []
        texts = [((action.get("data") or {}).get("text")) for action in actions
                 if isinstance(action, dict) and action.get("type") == "commentCard"
                 and isinstance(action.get("data"), dict)]
        return [text for text in texts if isinstance(text, str)][:max(0, limit)]

    def register_webhook(self, callback_url: str) -> list[str]:
        """POST /webhooks for each board; Trello checks the callback with HEAD before it creates one."""
        ids = []
        for board_id in self.board_ids():
            created = self._json("/webhooks", method="POST", body={
                "callbackURL": callback_url, "idModel": board_id, "description": "backlog-sync"})
            if not isinstance(created, dict) or not created.get("id"):
                raise ConnectorError(f"trello: POST /webhooks for board {board_id} answered without an id",
                                     vendor=VENDOR)
            ids.append(str(created["id"]))
        return ids

    # -- webhooks ----------------------------------------------------------------------------------

    def verify_webhook(self, *, headers: dict[str, str], body: bytes, url: str, secret: str | None) -> bool:
        return verify_webhook(headers=headers, body=body, url=url, secret=secret)

    def parse_webhook(self, body: bytes) -> list[WebhookEvent]:
        return parse_webhook(body)

    def close(self) -> None:
        self._session.close()

    # -- the one way calls are made ----------------------------------------------------------------

    def _json(self, path: str, *, method: str = "GET", query: dict[str, Any] | None = None,
              body: Any = None) -> Any:
        """A call through py-trello's fetch_json (its key/token handling, our transport)."""
        return self._call(self._client.fetch_json, path, http_method=method, query_params=dict(query or {}),
                          post_args=body)

    def _call(self, function: Any, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        try:
            return function(*args, **kwargs)
        except ResourceUnavailable as exc:  # a status py-trello refused that our adapter passed on (4xx)
            status = int(getattr(exc, "_status", 0) or 0)
            # py-trello's message is "<body> at <url without query>": no key or token in it.
            where = args[0] if args and isinstance(args[0], str) else getattr(function, "__name__", "call")
            error = error_for_status(status or 500, headers=None, body=str(exc), vendor=VENDOR, where=where)
            assert error is not None  # py-trello raises only for statuses of 400 and more
            raise error from exc
        except ValueError as exc:  # the answer was not JSON
            raise ConnectorError(f"trello: the answer was not JSON: {exc}", vendor=VENDOR) from exc


def _option_text(option: dict[str, Any]) -> str | None:
    value = option.get("value")
    if isinstance(value, dict):
        text = value.get("text")
        return text if isinstance(text, str) else None
    return None
