"""Seeded identifiers that look like the real service's (``run_...``, ``call_...``)."""

from __future__ import annotations

import random
import string

_ALPHABET = (string.ascii_letters + string.digits).encode()
# Random bytes become letters and digits in one ``bytes.translate`` (62 symbols over 256 byte
# values: the first 8 come 5 times in 256 rather than 4, which no test or client can tell).
_SYMBOLS = bytes(_ALPHABET[b % len(_ALPHABET)] for b in range(256))


class IdFactory:
    """Makes ids such as ``run_dR3fPUchuzG7d7ZgrJ4oZjLt``: random, but repeatable for a seed."""

    def __init__(self, seed: int = 0) -> None:
        self._rng = random.Random(f"ids:{seed}")

    def new(self, prefix: str, length: int = 24) -> str:
        """Return a fresh id ``{prefix}_{length random letters and digits}``."""
        return prefix + "_" + self._rng.randbytes(length).translate(_SYMBOLS).decode()

    def request_id(self) -> str:
        """Return a request id like the ``x-request-id`` header of the real service."""
        return "req_" + f"{self._rng.getrandbits(128):032x}"
