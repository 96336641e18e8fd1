"""Seeded identifiers that look like the real service's (``run_...``, ``call_...``)."""

from __future__ import annotations

import random
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
# Random bytes become letters and digits in one ``bytes.translate`` (62 symbols over 256 byte
# values: the first 8 come 5 times in 256 rather than 4, which no test or client can tell).
_SYMBOLS = bytes(_ALPHABET[b % len(_ALPHABET)] for b in range(256))
# Random symbols are drawn this many at a time, and ids sliced from them: a draw costs about
# what one id did, and a run takes half a dozen ids.
_POOL = 4096


class IdFactory:
    """Makes ids such as ``run_dR3fPUchuzG7d7ZgrJ4oZjLt``: random, but repeatable for a seed."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(f"ids:{seed}")
        self._symbols = ""  # random letters and digits drawn, from ``_at`` on not used yet
        self._at = 0
        self._hex = ""  # random hex digits drawn, from ``_hex_at`` on not used yet
        self._hex_at = 0

    def new(self, prefix: str, length: int = 24) -> str:
        """Return a fresh id ``{prefix}_{length random letters and digits}``."""
        at = self._at
        if at + length > len(self._symbols):
            size = max(_POOL, length)
            self._symbols = self._rng.randbytes(size).translate(_SYMBOLS).decode()
            at = 0
        self._at = at + length
        return prefix + "_" + self._symbols[at : at + length]

    def request_id(self) -> str:
        """Return a request id like the ``x-request-id`` header of the real service."""
        at = self._hex_at
        if at + 32 > len(self._hex):
            self._hex = self._rng.randbytes(_POOL // 2).hex()
            at = 0
        self._hex_at = at + 32
        return "req_" + self._hex[at : at + 32]
