"""Quorum policies: what a change needs, and how policy changes are checked and classed."""

from datetime import timedelta
from typing import Any

from django.conf import settings

from approvals.models import QuorumPolicy
from approvals.quorum import PARTIES, Requirement
from config.errors import ValidationFailed
from toggles.values import RISK_ORDER, Direction, RiskTier

TIERS = tuple(tier.value for tier in RiskTier)
THRESHOLD_KEYS = tuple(f"{party}.{tier}" for tier in TIERS for party in PARTIES)
HOUR_KEYS = {"pending_lifetime_hours": "pending_lifetime", "apply_window_hours": "apply_window"}
POLICY_KEYS = (*THRESHOLD_KEYS, "vetoes_required", *HOUR_KEYS)
MAX_THRESHOLD = 20
MAX_HOURS = 24 * 30


def floor(tier: str) -> int:
    """The lowest threshold per party that settings allow for a tier."""
    return int(settings.REDLINE_QUORUM_FLOOR[tier])


def policy_values(policy: QuorumPolicy) -> dict[str, Any]:
    values: dict[str, Any] = {key: getattr(policy, key.replace(".", "_")) for key in THRESHOLD_KEYS}
    values["vetoes_required"] = policy.vetoes_required
    for key, field in HOUR_KEYS.items():
        values[key] = int(getattr(policy, field) / timedelta(hours=1))
    return values


def policy_apply_values(policy: QuorumPolicy, changes: dict[str, Any]) -> None:
    for key, value in changes.items():
        if key in HOUR_KEYS:
            setattr(policy, HOUR_KEYS[key], timedelta(hours=value))
        else:
            setattr(policy, key.replace(".", "_"), value)


def requirement_for(policy: QuorumPolicy, *, tier: str, loosening: bool) -> Requirement:
    """A loosening needs both parties' quorum for its tier; a tightening one approval."""
    if not loosening:
        return Requirement(vendor=0, customer=0, any_party=1, vetoes=policy.vetoes_required)
    return Requirement(
        vendor=max(getattr(policy, f"vendor_{tier}"), floor(tier)),
        customer=max(getattr(policy, f"customer_{tier}"), floor(tier)),
        any_party=0,
        vetoes=policy.vetoes_required,
    )


def highest_tier(tiers) -> str:
    return max(tiers, key=lambda tier: RISK_ORDER[RiskTier(tier)])


def policy_validate_changes(policy: QuorumPolicy, changes: Any) -> dict[str, int]:
    """Check a proposed policy change; the message says what would be accepted."""
    if not isinstance(changes, dict) or not changes:
        raise ValidationFailed("changes must be a non-empty object of {policy key: new value}")
    clean: dict[str, int] = {}
    for key, value in sorted(changes.items()):
        if key not in POLICY_KEYS:
            raise ValidationFailed(
                f"unknown policy key '{key}'; use one of {', '.join(POLICY_KEYS)}"
            )
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValidationFailed(f"'{key}' takes a whole number, not {value!r}")
        if key in THRESHOLD_KEYS:
            tier = key.split(".")[1]
            if not floor(tier) <= value <= MAX_THRESHOLD:
                raise ValidationFailed(
                    f"'{key}' must be between the floor of {floor(tier)} and {MAX_THRESHOLD}"
                )
        elif key == "vetoes_required" and not 1 <= value <= MAX_THRESHOLD:
            raise ValidationFailed(f"'vetoes_required' must be between 1 and {MAX_THRESHOLD}")
        elif key in HOUR_KEYS and not 1 <= value <= MAX_HOURS:
            raise ValidationFailed(f"'{key}' must be between 1 and {MAX_HOURS} hours")
        clean[key] = value
    merged = {**policy_values(policy), **clean}
    for party in PARTIES:
        low, high, critical = (merged[f"{party}.{tier}"] for tier in TIERS)
        if not low <= high <= critical:
            raise ValidationFailed(
                f"{party} thresholds must not fall as risk rises (low {low}, high {high}, "
                f"critical {critical})"
            )
    return clean


def policy_change_direction(key: str, old: int, new: int) -> Direction:
    """Higher thresholds and fewer vetoes needed tighten; time limits change only by both."""
    if old == new:
        return Direction.UNCHANGED
    if key in THRESHOLD_KEYS:
        return Direction.TIGHTENING if new > old else Direction.LOOSENING
    if key == "vetoes_required":
        return Direction.TIGHTENING if new < old else Direction.LOOSENING
    return Direction.LOOSENING
