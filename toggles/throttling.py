"""Rate limits per deployment token, counted in fixed windows shared through Redis.

The rate is DRF's `deployment` throttle rate (REST_FRAMEWORK["DEFAULT_THROTTLE_RATES"]), e.g.
"3000/min". A request on the hot path must not wait for Redis, so each process counts its own
requests and adds them to the window's counter in Redis at most every
REDLINE_THROTTLE_SYNC_SECONDS, learning the other processes' counts in the same round trip
(0 syncs on every request: exact, one round trip each). Between syncs a process can let through
what the others counted meanwhile; the overshoot is bounded by processes x sync interval.
While Redis cannot be reached each process enforces the limit on its own count.
"""

import math
import time
from dataclasses import dataclass
from functools import lru_cache

from django.conf import settings
from django.core.cache import cache
from rest_framework.exceptions import Throttled
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from tenants.tokens import token_digest
from toggles.serving import REDIS_ERRORS

SCOPE = "deployment"
PERIODS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


@lru_cache(maxsize=16)
def rate_parse(rate: str) -> tuple[int, int]:
    """'3000/min' -> (3000 requests, 60 seconds), as DRF reads rates."""
    number, _, period = rate.partition("/")
    return int(number), PERIODS[period.strip()[0]]


@dataclass(slots=True)
class _Window:
    index: int
    counted: int = 0  # in Redis, by every process, at the last sync
    pending: int = 0  # by this process since then
    synced_at: float = float("-inf")


class RateLimiter:
    """The counts of one process (the module's `rate_limiter`)."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self._windows: dict[str, _Window] = {}

    def check(self, digest: str) -> None:
        """Count a request of the token with this SHA-256; Throttled when over its rate."""
        limit, period = rate_parse(api_settings.DEFAULT_THROTTLE_RATES[SCOPE])
        now = time.time()
        index = int(now // period)
        window = self._windows.get(digest)
        if window is None or window.index != index:
            if len(self._windows) > 10_000:
                self._windows = {k: w for k, w in self._windows.items() if w.index == index}
            window = self._windows[digest] = _Window(index=index)
        window.pending += 1
        if now - window.synced_at >= settings.REDLINE_THROTTLE_SYNC_SECONDS:
            self._sync(digest, window, period, now)
        if window.counted + window.pending > limit:
            raise Throttled(wait=max(1, math.ceil((index + 1) * period - now)))

    def _sync(self, digest: str, window: _Window, period: int, now: float) -> None:
        key = f"throttle:{SCOPE}:{digest}:{window.index}"
        try:
            cache.add(key, 0, timeout=period + 1)
            window.counted = cache.incr(key, window.pending)
        except (*REDIS_ERRORS, ValueError):
            window.synced_at = now
            return
        window.pending = 0
        window.synced_at = now


rate_limiter = RateLimiter()


class DeploymentRateThrottle(BaseThrottle):
    """DRF's face of the same limiter, for views authenticated by a deployment token."""

    def allow_request(self, request, view) -> bool:
        try:
            rate_limiter.check(token_digest(request.auth))
        except Throttled as throttled:
            self._wait = throttled.wait
            return False
        return True

    def wait(self) -> float:
        return self._wait
