"""What the two frame tests share: the reference encoding, a tricky text, and a sink that
hands every event the emulator sends, however it was encoded, to one check."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

TRICKY = 'Say "hi" \\ to Zoë\nand 日本\t\u2028 </script> \U0001f600 lone \ud83d \udc00\x00'


def dumps(value: Any) -> bytes:
    """The reference: the stdlib's compact JSON."""
    return json.dumps(value, separators=(",", ":")).encode()


class FrameSink:
    """A sink whose every way of sending an event ends in :meth:`check` (event name, JSON)."""

    def check(self, event: str, data: bytes) -> None:
        raise NotImplementedError

    def emit(self, event: str, data: dict[str, Any]) -> None:
        self.check(event, dumps(data))

    def emit_encoded(self, event: str, encode: Callable[[], bytes]) -> None:
        self.check(event, encode())

    def emit_raw(self, chunk: bytes) -> None:
        head, _, data = chunk.partition(b"\ndata: ")
        self.check(head.removeprefix(b"event: ").decode(), data.removesuffix(b"\n\n"))
