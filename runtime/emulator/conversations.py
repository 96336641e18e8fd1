"""The Conversations API of the emulator: ``/conversations`` and ``/conversations/{id}/items``.

A conversation is an ordered list of items (the stored item shapes of
:mod:`runtime.emulator.responses_items`). A response created with ``conversation`` reads the
conversation's items as its context and appends its input items (at creation) and its output
items (when it completes or ends incomplete), which is what the Responses front end does
through :meth:`ConversationsApi.lookup` and :class:`ConversationState`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from runtime.emulator.api import Call, JsonReply, Reply
from runtime.emulator.engine import now
from runtime.emulator.errors import ApiError, invalid
from runtime.emulator.ids import IdFactory
from runtime.emulator.objects import Obj, check_metadata, page
from runtime.emulator.params import (
    CONVERSATION_CREATE,
    CONVERSATION_ITEMS_CREATE,
    METADATA_ONLY,
    check_params,
)
from runtime.emulator.responses_items import input_items
from runtime.emulator.retention import DEFAULT_RETAINED, LruStore

Handler = Callable[[Call], Awaitable[Reply]]
MAX_ITEMS_PER_REQUEST = 20


@dataclass(eq=False)
class ConversationState:
    """A conversation: its wire object and its items in order (dict keeps insertion order)."""

    obj: Obj
    items: dict[str, Obj] = field(default_factory=dict)

    def add(self, items: list[Obj]) -> None:
        """Append items (their ids are unique: a repeated id replaces nothing, it is skipped)."""
        for item in items:
            self.items.setdefault(item["id"], item)


class ConversationsApi:
    """The Conversations endpoints.

    Args:
        ids: the emulator's id factory.
        retained: the most conversations kept (least recently used out; None: unbounded).
    """

    def __init__(self, ids: IdFactory, *, retained: int | None = DEFAULT_RETAINED) -> None:
        self.ids = ids
        self.conversations: LruStore[ConversationState] = LruStore(retained)

    def routes(self) -> list[tuple[str, str, Handler]]:
        """(method, path, handler) triples to mount under the API prefixes."""
        base = "/conversations/{conversation_id}"
        return [
            ("POST", "/conversations", self.create),
            ("GET", base, self.get),
            ("POST", base, self.update),
            ("DELETE", base, self.delete),
            ("GET", base + "/items", self.list_items),
            ("POST", base + "/items", self.create_items),
            ("GET", base + "/items/{item_id}", self.get_item),
            ("DELETE", base + "/items/{item_id}", self.delete_item),
        ]

    def lookup(self, conversation_id: str, param: str | None = None) -> ConversationState:
        """A conversation by id (404 if unknown)."""
        state = self.conversations.get(conversation_id)
        if state is None:
            raise ApiError(404, f"Conversation with id '{conversation_id}' not found.", param=param)
        return state

    def _items(self, raw: object) -> list[Obj]:
        if raw is None:
            return []
        if not isinstance(raw, list):
            raise invalid("Invalid type for 'items': expected an array.", param="items")
        if len(raw) > MAX_ITEMS_PER_REQUEST:
            raise invalid(
                f"Invalid 'items': array too long. Expected an array with maximum length "
                f"{MAX_ITEMS_PER_REQUEST}, but got an array with length {len(raw)} instead.",
                param="items",
                code="array_above_max_length",
            )
        return input_items(raw, self.ids, param="items")

    # -- conversations ----------------------------------------------------------------------

    async def create(self, call: Call) -> Reply:
        """POST /conversations (``items``, ``metadata``)."""
        check_params(call.body, CONVERSATION_CREATE)
        metadata = check_metadata(call.body.get("metadata"))
        items = self._items(call.body.get("items"))
        obj: Obj = {
            "id": self.ids.new("conv", 48),
            "object": "conversation",
            "created_at": now(),
            "metadata": metadata,
        }
        state = ConversationState(obj=obj)
        state.add(items)
        self.conversations[obj["id"]] = state
        return JsonReply(obj)

    async def get(self, call: Call) -> Reply:
        """GET /conversations/{id}."""
        return JsonReply(self.lookup(call.params["conversation_id"]).obj)

    async def update(self, call: Call) -> Reply:
        """POST /conversations/{id} (``metadata``)."""
        check_params(call.body, METADATA_ONLY)
        state = self.lookup(call.params["conversation_id"])
        if "metadata" not in call.body:
            raise ApiError(
                400,
                "Missing required parameter: 'metadata'.",
                param="metadata",
                code="missing_required_parameter",
            )
        state.obj["metadata"] = check_metadata(call.body["metadata"])
        return JsonReply(state.obj)

    async def delete(self, call: Call) -> Reply:
        """DELETE /conversations/{id}."""
        state = self.lookup(call.params["conversation_id"])
        self.conversations.pop(state.obj["id"])
        deleted = {"id": state.obj["id"], "object": "conversation.deleted", "deleted": True}
        return JsonReply(deleted)

    # -- items ------------------------------------------------------------------------------

    async def list_items(self, call: Call) -> Reply:
        """GET /conversations/{id}/items (``limit``, ``order``, ``after``, ``include``)."""
        state = self.lookup(call.params["conversation_id"])
        return JsonReply(page(list(state.items.values()), call.query))

    async def create_items(self, call: Call) -> Reply:
        """POST /conversations/{id}/items (``items``; ``include`` in the query)."""
        check_params(call.body, CONVERSATION_ITEMS_CREATE)
        state = self.lookup(call.params["conversation_id"])
        if "items" not in call.body:
            raise ApiError(
                400,
                "Missing required parameter: 'items'.",
                param="items",
                code="missing_required_parameter",
            )
        items = self._items(call.body["items"])
        state.add(items)
        return JsonReply(
            {
                "object": "list",
                "data": items,
                "first_id": items[0]["id"] if items else None,
                "last_id": items[-1]["id"] if items else None,
                "has_more": False,
            }
        )

    def _item(self, call: Call) -> tuple[ConversationState, Obj]:
        state = self.lookup(call.params["conversation_id"])
        item_id = call.params["item_id"]
        item = state.items.get(item_id)
        if item is None:
            raise ApiError(404, f"Item with id '{item_id}' not found.")
        return state, item

    async def get_item(self, call: Call) -> Reply:
        """GET /conversations/{id}/items/{item_id}."""
        return JsonReply(self._item(call)[1])

    async def delete_item(self, call: Call) -> Reply:
        """DELETE /conversations/{id}/items/{item_id}: answers the conversation."""
        state, item = self._item(call)
        del state.items[item["id"]]
        return JsonReply(state.obj)
