"""Races on real PostgreSQL transactions (DESIGN invariant 4): threads, each with its own
connection, released together by a barrier. Each race runs RACES times."""

import threading
import time
from collections import Counter
from collections.abc import Callable

import pytest
from django.contrib.auth import get_user_model
from django.db import OperationalError, connection

from approvals.errors import AlreadyDecided, RequestNotPending
from approvals.models import ChangeRequest, Decision, RequestStatus
from approvals.services import brake_pull, change_request_decide, change_request_submit
from audit.services import audit_verify
from tenants.models import Party, Role
from tenants.services import membership_set
from toggles.models import Profile, ProfileVersion, VersionKind
from toggles.selectors import effective_config
from toggles.services import profile_create

User = get_user_model()
RACES = 20
HIGH_ENUM = "intel.foreign_analysis"
HIGH_INT = "intel.bulk_ingestion_cap_records"
LIVE_TARGETS = "cyber.live_target_interaction"
BOTH_PARTIES = (
    "vendor-reviewer-1",
    "vendor-reviewer-2",
    "customer-reviewer-1",
    "customer-reviewer-2",
)
pytestmark = pytest.mark.django_db(transaction=True)


def race(*calls: Callable[[], object]) -> list[tuple[str, object]]:
    """Run the calls at the same moment, one thread and one connection each.

    Returns ("ok", result) or ("error", exception) per call, in the order given.
    """
    barrier = threading.Barrier(len(calls))
    outcomes: list[tuple[str, object] | None] = [None] * len(calls)

    def run(index: int, call: Callable[[], object]) -> None:
        try:
            barrier.wait(timeout=10)
            outcomes[index] = ("ok", call())
        except Exception as error:  # every outcome is asserted by the caller
            outcomes[index] = ("error", error)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i, call)) for i, call in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(thread.is_alive() for thread in threads)
    for outcome in outcomes:
        assert not (outcome[0] == "error" and isinstance(outcome[1], OperationalError)), outcome
    return outcomes


def person(username: str):
    return User.objects.get(username=username)


def decide_call(cr_id: int, username: str, verdict: str = "approve"):
    def call():
        return change_request_decide(
            change_request_id=cr_id, actor=person(username), verdict=verdict, channel="api"
        ).status

    return call


def submit(profile, username, changes):
    profile.refresh_from_db()
    return change_request_submit(
        tenant=profile.tenant,
        profile=profile,
        actor=person(username),
        changes=changes,
        justification="race",
        base_version=profile.current_version,
    )


def approve(cr, *usernames):
    for username in usernames:
        change_request_decide(
            change_request_id=cr.pk, actor=person(username), verdict="approve", channel="api"
        )


@pytest.fixture
def profile(demo, make_user):
    for party in (Party.VENDOR, Party.CUSTOMER):
        membership_set(
            tenant=demo.tenant,
            user=make_user(f"{party}-reviewer-3"),
            party=party,
            role=Role.REVIEWER,
        )
    return Profile.objects.get(tenant=demo.tenant, name="default")


def test_race__two_final_approvals_at_once__applied_exactly_once(profile):
    seen = Counter()
    for number in range(RACES):
        cr = submit(profile, "vendor-admin", {HIGH_INT: 100_000 + (number + 1) * 1000})
        assert (cr.required_vendor, cr.required_customer) == (2, 2)
        approve(cr, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")
        versions = ProfileVersion.objects.filter(profile=profile).count()

        outcomes = race(
            decide_call(cr.pk, "customer-reviewer-2"), decide_call(cr.pk, "customer-reviewer-3")
        )

        assert sorted(kind for kind, _ in outcomes) == ["error", "ok"]
        winner = next(i for i, (kind, _) in enumerate(outcomes) if kind == "ok")
        loser_error = outcomes[1 - winner][1]
        assert outcomes[winner][1] == RequestStatus.APPLIED
        assert type(loser_error) is RequestNotPending
        assert str(loser_error) == (
            f"change request #{cr.pk} is applied; only pending requests take decisions"
        )
        cr.refresh_from_db()
        profile.refresh_from_db()
        assert cr.status == RequestStatus.APPLIED
        assert ProfileVersion.objects.filter(profile=profile).count() == versions + 1
        assert cr.applied_version == profile.current_version
        assert ProfileVersion.objects.get(profile=profile, number=cr.applied_version).source == (
            f"change_request:{cr.pk}"
        )
        winner_name = f"customer-reviewer-{winner + 2}"
        assert sorted(
            Decision.objects.filter(change_request=cr).values_list("reviewer__username", flat=True)
        ) == sorted(["vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1", winner_name])
        seen[winner_name] += 1
    assert sum(seen.values()) == RACES
    assert audit_verify()[1] is None
    print(f"two final approvals: {RACES} races, winners {dict(seen)}")


@pytest.mark.parametrize(
    "verdicts", [("approve", "approve"), ("approve", "reject")], ids=["same", "opposite"]
)
def test_race__same_reviewer_twice_at_once__one_decision_recorded(profile, verdicts):
    seen = Counter()
    for number in range(RACES):
        cr = submit(profile, "customer-admin", {HIGH_INT: 200_000 + number})
        outcomes = race(*(decide_call(cr.pk, "vendor-reviewer-1", v) for v in verdicts))

        assert sorted(kind for kind, _ in outcomes) == ["error", "ok"]
        winner = next(i for i, (kind, _) in enumerate(outcomes) if kind == "ok")
        error = outcomes[1 - winner][1]
        decisions = list(Decision.objects.filter(change_request=cr))
        assert [(d.reviewer.username, d.verdict) for d in decisions] == [
            ("vendor-reviewer-1", verdicts[winner])
        ]
        cr.refresh_from_db()
        if verdicts[winner] == "reject":
            assert cr.status == RequestStatus.REJECTED
            assert type(error) is RequestNotPending
        else:
            assert cr.status == RequestStatus.PENDING
            assert type(error) is AlreadyDecided
            assert str(error) == (
                f"vendor-reviewer-1 has already decided on change request #{cr.pk}"
            )
        seen[type(error).__name__] += 1
        if cr.status == RequestStatus.PENDING:
            change_request_decide(
                change_request_id=cr.pk,
                actor=person("customer-reviewer-1"),
                verdict="reject",
                channel="api",
            )
    assert audit_verify()[1] is None
    print(f"same reviewer twice ({'/'.join(verdicts)}): {RACES} races, refusals {dict(seen)}")


def test_race__final_approval_against_brake__brake_never_lost(profile):
    """Every other round a second braked key is loose beforehand, so a brake that wins the
    race sometimes writes a version and sometimes finds nothing left to tighten."""
    seen = Counter()
    for number in range(RACES):
        if number % 2:
            live = submit(profile, "vendor-admin", {LIVE_TARGETS: True})
            approve(live, *BOTH_PARTIES)
        cr = submit(profile, "vendor-admin", {HIGH_ENUM: "full"})
        approve(cr, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")

        def pull():
            return brake_pull(
                tenant=profile.tenant,
                actor=person("customer-reviewer-3"),
                reason="race",
                keys=[HIGH_ENUM, LIVE_TARGETS],
            )

        outcomes = race(decide_call(cr.pk, "customer-reviewer-2"), pull)

        (decided, decision), (braked, brake) = outcomes
        assert braked == "ok", brake
        cr.refresh_from_db()
        profile.refresh_from_db()
        current = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
        values = effective_config(profile=profile)["values"]
        assert (values[HIGH_ENUM], values[LIVE_TARGETS]) == ("off", False)
        if cr.status == RequestStatus.APPLIED:
            # The approval came first; the brake was built on top of it.
            assert (decided, decision) == ("ok", RequestStatus.APPLIED)
            assert (current.kind, brake.versions) == (
                VersionKind.BRAKE,
                {"default": current.number},
            )
            assert current.parent.number == cr.applied_version
            seen["applied, then braked"] += 1
        else:
            # The brake came first: the request is void and the last approval refused.
            assert cr.status == RequestStatus.STALE
            assert (decided, type(decision), str(decision)) == (
                "error",
                RequestNotPending,
                f"change request #{cr.pk} is stale; only pending requests take decisions",
            )
            assert cr.applied_version is None
            assert Decision.objects.filter(change_request=cr).count() == 3
            if brake.versions:
                assert brake.versions == {"default": current.number}
                assert current.kind == VersionKind.BRAKE
                assert cr.base_version == current.number - 1
                seen["braked, then stale"] += 1
            else:
                assert brake.unchanged == ["default"]
                assert cr.base_version == current.number
                assert cr.status_reason == (
                    "an emergency brake was pulled on demo/default before the request was applied"
                )
                seen["brake with nothing to tighten, then stale"] += 1
    assert sum(seen.values()) == RACES
    assert audit_verify()[1] is None
    print(f"final approval against brake: {RACES} races, outcomes {dict(seen)}")


def test_race__brake_of_every_profile_against_decision__no_deadlock(profile):
    """The brake walks the tenant's profiles; a decision on the last one must not deadlock it.

    Three profiles sort before "default", so the brake has written audit events (and holds
    the audit chain's lock) by the time it reaches "default"; the decision starts a little
    later each round, so some rounds lock "default" first.
    """
    for name in ("alpha", "bravo", "charlie"):
        profile_create(tenant=profile.tenant, name=name)
    seen = Counter()
    for number in range(RACES):
        cr = submit(profile, "vendor-admin", {HIGH_ENUM: "full"})
        approve(cr, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")
        delay = number / RACES * 0.05

        def pull():
            return brake_pull(
                tenant=profile.tenant,
                actor=person("vendor-admin"),
                reason="race",
                keys=[HIGH_ENUM, HIGH_INT],
            )

        decide = decide_call(cr.pk, "customer-reviewer-2")

        def late_decision(delay=delay, decide=decide):
            time.sleep(delay)
            return decide()

        outcomes = race(pull, late_decision)

        assert outcomes[0][0] == "ok", outcomes
        assert outcomes[1][0] == "ok" or type(outcomes[1][1]) is RequestNotPending, outcomes
        for braked in Profile.objects.filter(tenant=profile.tenant):
            values = effective_config(profile=braked)["values"]
            assert (values[HIGH_ENUM], values[HIGH_INT]) == ("off", 0)
        seen[ChangeRequest.objects.get(pk=cr.pk).status] += 1
    assert sum(seen.values()) == RACES
    assert audit_verify()[1] is None
    print(f"brake of four profiles against decision: {RACES} races, outcomes {dict(seen)}")
