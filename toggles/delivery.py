"""Webhook push of a signed config document to one deployment, and how to read the answer.

No database here: toggles.rollout decides what to send and records what happened.
"""

import random
from dataclasses import dataclass
from enum import StrEnum

import urllib3

USER_AGENT = "redline-rollout/1"
RETRYABLE_CLIENT_ERRORS = frozenset({408, 429})
ERROR_BODY_EXCERPT = 200
POOL_SIZE = 50


class Outcome(StrEnum):
    DELIVERED = "delivered"
    RETRY = "retry"
    FAIL = "fail"


@dataclass(frozen=True)
class PushResult:
    outcome: Outcome
    detail: str
    retry_after: float | None = None


def classify(status: int) -> Outcome:
    """2xx delivered; 5xx, 408 and 429 are worth retrying; any other answer will not change."""
    if 200 <= status < 300:
        return Outcome.DELIVERED
    if status >= 500 or status in RETRYABLE_CLIENT_ERRORS:
        return Outcome.RETRY
    return Outcome.FAIL


def backoff_delay(
    attempt: int, *, base: float, cap: float, rng: random.Random | None = None
) -> float:
    """Seconds to wait after failed attempt number `attempt` (from 1): exponential, capped,
    with equal jitter so that deployments failing together do not all retry together."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return ceiling / 2 + (rng or random).uniform(0, ceiling / 2)


def _retry_after(value: str | None) -> float | None:
    if value is None or not value.strip().isdigit():
        return None
    return float(value.strip())


_pool: urllib3.PoolManager | None = None


def _http() -> urllib3.PoolManager:
    """One connection pool per process, made on first use (after a worker has forked);
    up to POOL_SIZE connections kept per host, as many as pushes sent together."""
    global _pool
    if _pool is None:
        _pool = urllib3.PoolManager(num_pools=64, maxsize=POOL_SIZE, retries=False)
    return _pool


def push(*, url: str, body: bytes, headers: dict[str, str], timeout: float) -> PushResult:
    """POST once. Network trouble is a result (worth retrying), never an exception."""
    try:
        response = _http().request(
            "POST",
            url,
            body=body,
            headers={"Content-Type": "application/json", "User-Agent": USER_AGENT, **headers},
            timeout=urllib3.Timeout(total=timeout),
            redirect=False,
            preload_content=False,
        )
    except urllib3.exceptions.HTTPError as error:
        reason = getattr(error, "reason", None) or error
        return PushResult(Outcome.RETRY, f"{type(error).__name__}: {reason}")
    try:
        excerpt = response.read(ERROR_BODY_EXCERPT, decode_content=True)
        response.drain_conn()
    except urllib3.exceptions.HTTPError:
        excerpt = b""
    finally:
        response.release_conn()
    status = response.status
    outcome = classify(status)
    text = excerpt.decode("utf-8", "replace").strip()
    detail = f"HTTP {status}" + (f": {text}" if text and outcome != Outcome.DELIVERED else "")
    if 300 <= status < 400:
        detail += " (redirects are not followed: set the webhook URL to the final address)"
    return PushResult(outcome, detail, _retry_after(response.headers.get("Retry-After")))
