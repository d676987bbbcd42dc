"""The legal moves of a change request, as data."""

from approvals.models import RequestStatus as S

TRANSITIONS: dict[str, frozenset[str]] = {
    S.PENDING: frozenset({S.APPROVED, S.REJECTED, S.WITHDRAWN, S.EXPIRED, S.STALE}),
    S.APPROVED: frozenset({S.APPLIED, S.STALE, S.EXPIRED}),
    S.APPLIED: frozenset(),
    S.REJECTED: frozenset(),
    S.WITHDRAWN: frozenset(),
    S.EXPIRED: frozenset(),
    S.STALE: frozenset(),
}

OPEN_STATUSES = frozenset({S.PENDING, S.APPROVED})


def can_move(current: str, target: str) -> bool:
    return target in TRANSITIONS[current]
