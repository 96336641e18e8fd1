"""The API objects both protocols share: tolerant bases, answer metadata, lists, errors.

Every model keeps fields the server adds later (``extra="allow"``): a runtime that crashes
on a new field is worse than one that ignores it.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Discriminator, Field
from pydantic.fields import FieldInfo

#: How the ``Known1 | Known2 | Unknown`` unions of the API objects are validated: the members
#: are tried in order and the first that validates is kept. Their known members are told
#: apart by a literal ``type`` and the fallback comes last, so that first match is the member
#: pydantic's default (smart) mode would choose, found without validating every member (the
#: smart mode's cost, about 4x, on each item, content part and tool call of every object).
FIRST_MATCH: FieldInfo = Field(union_mode="left_to_right")


#: Goes with FIRST_MATCH: ``Annotated[Annotated[Known1, Tag("a")] | Annotated[Known2, Tag("b")],
#: BY_TYPE] | Unknown`` tries only the known member the object's ``type`` names, then the
#: fallback. Each known member takes one literal ``type``, so every other known member would
#: fail anyway: the outcome is first-match's, without building the errors of members that
#: cannot match. The tag is read in pydantic's core (a dict key or a model's attribute); an
#: object without a known ``type`` string goes to the fallback, as first-match sends it.
BY_TYPE = Discriminator("type")


class ResponseMeta(BaseModel):
    """What the HTTP answer said about an object, beside its body.

    Attributes:
        request_id: the ``x-request-id`` header.
        poll_after_ms: the ``openai-poll-after-ms`` header, a hint for polling clients.
        server_time: the server's clock (epoch seconds) from the ``Date`` header.
    """

    model_config = ConfigDict(frozen=True)

    request_id: str | None = None
    poll_after_ms: int | None = None
    server_time: float | None = None


class APIModel(BaseModel):
    """Base of all API objects: unknown fields are kept, never rejected."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)


class APIObject(APIModel):
    """A top-level object an endpoint answers with; remembers the answer's headers.

    The headers live in pydantic's private dict, set only on objects that came from an HTTP
    answer: a declared private attribute would be initialised (in Python) on every instance,
    and the objects of a stream's status events, validated by the hundred per run, never
    carry one.
    """

    @property
    def response_meta(self) -> ResponseMeta | None:
        """Headers of the HTTP answer that carried this object, when it came from one."""
        private = self.__pydantic_private__
        return private.get("_meta") if private is not None else None

    def attach_meta(self, meta: ResponseMeta) -> None:
        """Remember the headers of the HTTP answer that carried this object."""
        # Kept with the object by pydantic's copy, pickling and equality, as a private
        # attribute's value is.
        object.__setattr__(self, "__pydantic_private__", {"_meta": meta})


class DeletionStatus(APIObject):
    """Answer of a delete call."""

    id: str
    object: str | None = None
    deleted: bool = False


class APIErrorBody(APIModel):
    """An error object, as in ``{"error": {...}}`` bodies and ``error`` events."""

    message: str = ""
    type: str | None = None
    param: str | None = None
    code: str | None = None


class ListPage(APIObject):
    """One page of a list answer."""

    object: str = "list"
    data: list[dict[str, Any]] = Field(default_factory=list)
    first_id: str | None = None
    last_id: str | None = None
    has_more: bool = False
