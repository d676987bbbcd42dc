"""How a webhook answer is read, and how long to wait before the next attempt."""

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from toggles.delivery import Outcome, backoff_delay, classify


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, Outcome.DELIVERED),
        (202, Outcome.DELIVERED),
        (204, Outcome.DELIVERED),
        (301, Outcome.FAIL),
        (400, Outcome.FAIL),
        (401, Outcome.FAIL),
        (404, Outcome.FAIL),
        (408, Outcome.RETRY),
        (409, Outcome.FAIL),
        (422, Outcome.FAIL),
        (429, Outcome.RETRY),
        (500, Outcome.RETRY),
        (502, Outcome.RETRY),
        (503, Outcome.RETRY),
    ],
)
def test_classify__status__delivered_retry_or_fail(status, outcome):
    assert classify(status) == outcome


@given(
    attempt=st.integers(min_value=1, max_value=40),
    base=st.floats(min_value=0.01, max_value=60),
    cap=st.floats(min_value=0.01, max_value=3600),
    seed=st.integers(),
)
def test_backoff__any_attempt__between_half_and_whole_capped_exponential(attempt, base, cap, seed):
    ceiling = min(cap, base * 2 ** (attempt - 1))
    delay = backoff_delay(attempt, base=base, cap=cap, rng=random.Random(seed))
    assert ceiling / 2 <= delay <= ceiling


def test_backoff__successive_attempts__ceiling_doubles_until_the_cap():
    ceilings = [backoff_delay(n, base=1, cap=10, rng=_Top()) for n in range(1, 7)]
    assert ceilings == [1, 2, 4, 8, 10, 10]


def test_backoff__many_deployments_failing_together__spread_out():
    rng = random.Random(7)
    delays = {round(backoff_delay(3, base=2, cap=300, rng=rng), 3) for _ in range(100)}
    assert len(delays) > 90
    assert min(delays) >= 4 and max(delays) <= 8


class _Top(random.Random):
    """Always the top of the jitter range."""

    def uniform(self, a, b):
        return b
