"""Quorum: policy + decisions + current roster -> result. Pure, no database."""

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

PARTIES = ("vendor", "customer")


@dataclass(frozen=True)
class Requirement:
    vendor: int
    customer: int
    any_party: int
    vetoes: int


@dataclass(frozen=True)
class Vote:
    reviewer_id: int
    party: str
    approve: bool


@dataclass(frozen=True)
class Tally:
    vendor_approvals: int
    customer_approvals: int
    approvals: int
    rejections: int
    rejected_by: tuple[int, ...]
    met: bool
    vetoed: bool


def tally(
    *,
    requirement: Requirement,
    requester_id: int,
    votes: Iterable[Vote],
    roster: Mapping[int, str],
) -> Tally:
    """Count what counts.

    `roster` maps each current reviewer to their party now. The requester never counts;
    one person counts once (their first vote); a vote counts only while its author is
    still a reviewer, and only for the party they voted as and still belong to.
    """
    seen: set[int] = set()
    approvals = {party: 0 for party in PARTIES}
    rejected_by: list[int] = []
    for vote in votes:
        if vote.reviewer_id == requester_id or vote.reviewer_id in seen:
            continue
        seen.add(vote.reviewer_id)
        if roster.get(vote.reviewer_id) != vote.party or vote.party not in approvals:
            continue
        if vote.approve:
            approvals[vote.party] += 1
        else:
            rejected_by.append(vote.reviewer_id)
    total = approvals["vendor"] + approvals["customer"]
    met = (
        approvals["vendor"] >= requirement.vendor
        and approvals["customer"] >= requirement.customer
        and total >= requirement.any_party
    )
    vetoed = len(rejected_by) >= requirement.vetoes
    return Tally(
        vendor_approvals=approvals["vendor"],
        customer_approvals=approvals["customer"],
        approvals=total,
        rejections=len(rejected_by),
        rejected_by=tuple(rejected_by),
        met=met and not vetoed,
        vetoed=vetoed,
    )
