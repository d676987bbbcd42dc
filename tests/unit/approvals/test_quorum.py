"""approvals.quorum.tally, a pure function, driven by hypothesis without a database.

Some of its rules are also guarded by the services (the requester cannot record a decision
at all), so they are tried here directly, where nothing else stands in front of them.
"""

from hypothesis import given
from hypothesis import strategies as st

from approvals.quorum import Requirement, Vote, tally

PEOPLE = range(1, 9)
REQUESTER = 1

requirements = st.builds(
    Requirement,
    vendor=st.integers(0, 3),
    customer=st.integers(0, 3),
    any_party=st.integers(0, 2),
    vetoes=st.integers(1, 3),
)
votes = st.lists(
    st.builds(
        Vote,
        reviewer_id=st.sampled_from(PEOPLE),
        party=st.sampled_from(["vendor", "customer", "other"]),
        approve=st.booleans(),
    ),
    max_size=12,
)
rosters = st.dictionaries(
    st.sampled_from(PEOPLE), st.sampled_from(["vendor", "customer"]), max_size=len(PEOPLE)
)


def expected(requirement, vote_list, roster):
    """The rules written out once more, in the plainest way."""
    first = {}
    for vote in vote_list:
        first.setdefault(vote.reviewer_id, vote)
    counted = [
        v for person, v in first.items() if person != REQUESTER and roster.get(person) == v.party
    ]
    vendor = sum(1 for v in counted if v.approve and v.party == "vendor")
    customer = sum(1 for v in counted if v.approve and v.party == "customer")
    rejections = sum(1 for v in counted if not v.approve)
    vetoed = rejections >= requirement.vetoes
    met = (
        vendor >= requirement.vendor
        and customer >= requirement.customer
        and vendor + customer >= requirement.any_party
        and not vetoed
    )
    return vendor, customer, rejections, met, vetoed


@given(requirement=requirements, vote_list=votes, roster=rosters)
def test_tally__any_votes_and_roster__matches_the_rules_written_out(requirement, vote_list, roster):
    result = tally(requirement=requirement, requester_id=REQUESTER, votes=vote_list, roster=roster)
    assert (
        result.vendor_approvals,
        result.customer_approvals,
        result.rejections,
        result.met,
        result.vetoed,
    ) == expected(requirement, vote_list, roster)
    assert result.approvals == result.vendor_approvals + result.customer_approvals
    assert REQUESTER not in result.rejected_by


@given(requirement=requirements, vote_list=votes, roster=rosters)
def test_tally__requester_votes_added__result_unchanged(requirement, vote_list, roster):
    without = [v for v in vote_list if v.reviewer_id != REQUESTER]
    with_requester = [
        Vote(reviewer_id=REQUESTER, party=roster.get(REQUESTER, "vendor"), approve=True),
        *without,
    ]
    assert tally(
        requirement=requirement, requester_id=REQUESTER, votes=with_requester, roster=roster
    ) == tally(requirement=requirement, requester_id=REQUESTER, votes=without, roster=roster)


@given(requirement=requirements, vote_list=votes, roster=rosters)
def test_tally__approvals_per_party__never_exceed_that_partys_reviewers(
    requirement, vote_list, roster
):
    result = tally(requirement=requirement, requester_id=REQUESTER, votes=vote_list, roster=roster)
    for party, approvals in (
        ("vendor", result.vendor_approvals),
        ("customer", result.customer_approvals),
    ):
        members = {p for p, member_party in roster.items() if member_party == party}
        assert approvals <= len(members - {REQUESTER})


def test_tally__vendor_approvals_only__customer_quorum_not_met():
    roster = {2: "vendor", 3: "vendor", 4: "vendor", 5: "customer"}
    result = tally(
        requirement=Requirement(vendor=2, customer=2, any_party=0, vetoes=1),
        requester_id=REQUESTER,
        votes=[Vote(p, "vendor", True) for p in (2, 3, 4)] + [Vote(5, "customer", True)],
        roster=roster,
    )
    assert (result.vendor_approvals, result.customer_approvals, result.met) == (3, 1, False)


def test_tally__vote_cast_as_vendor_by_now_customer__not_counted():
    result = tally(
        requirement=Requirement(vendor=0, customer=1, any_party=0, vetoes=1),
        requester_id=REQUESTER,
        votes=[Vote(2, "vendor", True)],
        roster={2: "customer"},
    )
    assert (result.approvals, result.met) == (0, False)


def test_tally__reviewer_gone_from_roster__vote_not_counted():
    result = tally(
        requirement=Requirement(vendor=1, customer=0, any_party=0, vetoes=1),
        requester_id=REQUESTER,
        votes=[Vote(2, "vendor", True), Vote(3, "vendor", False)],
        roster={4: "vendor"},
    )
    assert (result.approvals, result.rejections, result.met, result.vetoed) == (0, 0, False, False)


def test_tally__first_vote_of_a_person_counts__later_ones_ignored():
    result = tally(
        requirement=Requirement(vendor=0, customer=0, any_party=1, vetoes=1),
        requester_id=REQUESTER,
        votes=[Vote(2, "vendor", True), Vote(2, "vendor", False)],
        roster={2: "vendor"},
    )
    assert (result.approvals, result.rejections, result.met) == (1, 0, True)


def test_tally__requester_approves_own_tightening__not_met():
    result = tally(
        requirement=Requirement(vendor=0, customer=0, any_party=1, vetoes=1),
        requester_id=REQUESTER,
        votes=[Vote(REQUESTER, "vendor", True)],
        roster={REQUESTER: "vendor"},
    )
    assert (result.approvals, result.met) == (0, False)


def test_tally__quorum_met_with_one_rejection__vetoed_not_met():
    result = tally(
        requirement=Requirement(vendor=1, customer=1, any_party=0, vetoes=1),
        requester_id=REQUESTER,
        votes=[Vote(2, "vendor", True), Vote(3, "customer", True), Vote(4, "customer", False)],
        roster={2: "vendor", 3: "customer", 4: "customer"},
    )
    assert (result.met, result.vetoed, result.rejected_by) == (False, True, (4,))
