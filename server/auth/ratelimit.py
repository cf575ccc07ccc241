"""A token bucket per access token: `rate` calls a second, up to `burst` at once."""

from __future__ import annotations

import time
from collections.abc import Callable


class RateLimiter:
    """`take(key)` spends one call of `key`'s bucket: None when allowed, else the seconds until the
    next call would be. A rate of 0 (or less) turns the limit off."""

    def __init__(self, rate_per_s: float, burst: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate_per_s
        self.burst = max(1, burst)
        self._clock = clock
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (calls left, at time)

    @property
    def enabled(self) -> bool:
        return self.rate > 0

    def take(self, key: str) -> float | None:
        if not self.enabled:
            return None
        now = self._clock()
        left, at = self._buckets.get(key, (float(self.burst), now))
        left = min(float(self.burst), left + (now - at) * self.rate)
        if left >= 1.0:
            self._buckets[key] = (left - 1.0, now)
            return None
        self._buckets[key] = (left, now)
        return (1.0 - left) / self.rate

    def forget(self, key: str) -> None:
        self._buckets.pop(key, None)
