"""JSON text from one C encoder made once, for values that cannot hold a reference cycle.

``json.dumps`` with any option, and ``JSONEncoder.encode`` on every call, build a new C
encoder (and the circular-reference bookkeeping) before they write a byte. Where a value is
known to be acyclic (parsed JSON, flat log events, the emulator's wire objects) and is encoded
often, that set-up is most of the cost.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

__all__ = ["acyclic_encoder"]


def acyclic_encoder(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode``, with ``encoder``'s options, from one C encoder made now.

    The value must hold no reference cycle: none is looked for (a cycle would recurse until
    ``RecursionError``). Falls back to ``encoder.encode`` without the C accelerator or with
    an indent (which the C encoder does not do).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None or encoder.indent is not None:
        return encoder.encode
    string: Callable[[str], str] = (
        json.encoder.encode_basestring_ascii
        if encoder.ensure_ascii
        else getattr(json.encoder, "encode_basestring")  # noqa: B009 - untyped in typeshed
    )
    chunks = make(
        None,  # markers: no circular check
        encoder.default,
        string,
        None,  # indent
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )

    def encode(value: Any) -> str:
        if isinstance(value, str):  # as JSONEncoder.encode: a lone string skips the encoder
            return string(value)
        return "".join(chunks(value, 0))

    return encode
