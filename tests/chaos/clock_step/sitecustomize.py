"""Steps this process's wall clock: on PYTHONPATH of a worker subprocess of the chaos tests.

``CHAOS_WALL_CLOCK_OFFSET_S=60`` makes ``time.time()`` run 60 s ahead (as after an NTP or
operator step); the monotonic clock is left alone, as the kernel leaves it.
"""

from __future__ import annotations

import os
import time

_OFFSET_S = float(os.environ.get("CHAOS_WALL_CLOCK_OFFSET_S", "0") or 0)

if _OFFSET_S:
    _real_time = time.time

    def _stepped_time() -> float:
        return _real_time() + _OFFSET_S

    time.time = _stepped_time
