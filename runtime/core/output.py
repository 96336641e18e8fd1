"""Typed structured output: a type -> the JSON schema the model must follow -> a validated value.

``output_type=`` on a run (a pydantic model, a dataclass or a TypedDict) becomes a strict
JSON schema (decided by :func:`tools.schema.normalize_schema`, never by a pydantic default),
sent as the protocol's structured-output setting; the final answer is validated into an
instance. An answer that does not validate gets a bounded retry that tells the model what
was wrong (``RunPolicy.output_retries``); the last failure is a result field
(``output_error``), never an exception.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Generic, TypeVar

import pydantic
from pydantic import TypeAdapter

from runtime.core.backend import OutputSchema
from tools.errors import ToolRegistrationError
from tools.schema import normalize_schema, to_strict_schema

T = TypeVar("T")
_MAX_FEEDBACK_CHARS = 2000


@dataclass(frozen=True)
class OutputSpec(Generic[T]):
    """What a run's answer must be.

    Attributes:
        schema: the schema sent to the model.
        adapter: validates the answer's JSON into a ``T``.
    """

    schema: OutputSchema
    adapter: TypeAdapter[T]

    def validate(self, text: str) -> tuple[T | None, str | None]:
        """The answer as a ``T``, or None and why it is not one (readable, for the model)."""
        try:
            return self.adapter.validate_json(text.strip() or "null"), None
        except pydantic.ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or '(answer)'}: {e['msg']}"
                for e in exc.errors(include_url=False)[:10]
            )
            return None, problems[:_MAX_FEEDBACK_CHARS]

    def feedback(self, problems: str) -> str:
        """The message that asks the model for a valid answer."""
        return (
            f"Your answer does not match the required JSON schema {self.schema.name!r}: "
            f"{problems}. Answer again with only a JSON value that matches the schema."
        )


def output_spec(output_type: type[T]) -> OutputSpec[T]:
    """The schema and validator of ``output_type`` (strict where the schema allows it).

    Raises:
        TypeError: the type has no JSON schema.
    """
    adapter: TypeAdapter[T] = TypeAdapter(output_type)
    try:
        schema = normalize_schema(adapter.json_schema())
    except (pydantic.PydanticSchemaGenerationError, pydantic.PydanticUserError) as exc:
        raise TypeError(f"{output_type!r} cannot be a structured output: {exc}") from exc
    name = re.sub(r"[^A-Za-z0-9_-]", "_", getattr(output_type, "__name__", "output"))[:64]
    try:
        return OutputSpec(OutputSchema(name, to_strict_schema(schema, name=name), True), adapter)
    except ToolRegistrationError:  # a free-form object: strict mode cannot express it
        return OutputSpec(OutputSchema(name, schema, False), adapter)
