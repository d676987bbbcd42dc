"""Random sequences of everything people and time do to the approval engine (hypothesis).

Each example runs inside one transaction on the real database, rolled back at its end,
with the wall clock frozen and moved only by the machine's clock jumps. After every step
the invariants are checked against the database, recomputed here without approvals.quorum.
"""

from collections import Counter
from datetime import timedelta
from unittest import mock

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    initialize,
    invariant,
    multiple,
    precondition,
    rule,
    run_state_machine_as_test,
)

from approvals.errors import (
    AlreadyDecided,
    NotAllowed,
    RequestNotPending,
    SelfApprovalForbidden,
)
from approvals.models import ChangeRequest, Decision, QuorumPolicy, RequestKind, RequestStatus
from approvals.policy import floor
from approvals.services import (
    brake_pull,
    change_request_decide,
    change_request_submit,
    change_request_withdraw,
    change_requests_sweep,
    quorum_policy_for,
)
from audit.services import audit_verify
from config.errors import Conflict, NotFound, RedLineViolation, ValidationFailed
from tenants.models import Membership, Party, Role
from tenants.services import membership_remove, membership_set
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion, VersionKind
from toggles.selectors import effective_config
from toggles.services import StaleBaseVersion, profile_create
from toggles.values import Direction, ValueType, change_direction, safest_value

User = get_user_model()
MAX_EXAMPLES = 12
STEPS_PER_EXAMPLE = 40

REVIEWERS = [f"{party}-reviewer-{n}" for party in ("vendor", "customer") for n in (1, 2, 3)]
MEMBERS = [*REVIEWERS, "vendor-admin", "customer-admin"]
ACTORS = [*MEMBERS, "auditor", "root"]
PROFILES = ["default", "classified"]
OPEN = (RequestStatus.PENDING, RequestStatus.APPROVED)


def catalog_strategies() -> tuple[dict, dict]:
    """A value strategy for every capability (red lines included), and the specs."""
    specs = {c.key: c.spec() for c in Capability.objects.all()}
    values = {}
    for key, spec in specs.items():
        match spec.value_type:
            case ValueType.BOOL:
                values[key] = st.booleans()
            case ValueType.ENUM:
                values[key] = st.sampled_from(spec.choices)
            case ValueType.INT:
                low, high = int(spec.minimum), int(spec.maximum)
                values[key] = st.sampled_from(sorted({low, high, spec.default, (low + high) // 2}))
            case ValueType.FLOAT:
                values[key] = st.sampled_from(
                    sorted({spec.minimum, spec.maximum, spec.default, 0.75})
                )
            case ValueType.STRING:
                values[key] = st.sampled_from([spec.default, "SECRET", "TOP SECRET"])
    return specs, values


class ApprovalMachine(RuleBasedStateMachine):
    """Set up by the test: `tenant`, `specs`, `value_strategies`; counts shared by examples."""

    tenant = None
    specs: dict = {}
    value_strategies: dict = {}
    adjustable: list = []
    steps = Counter()
    outcomes = Counter()
    requests = Bundle("requests")

    def __init__(self):
        super().__init__()
        self._atomic = transaction.atomic()
        self._atomic.__enter__()
        self.now = timezone.now()
        self._clock = mock.patch("django.utils.timezone.now", side_effect=lambda: self.now)
        self._clock.start()
        # Profile rows as read once at the start; their current_version goes out of date.
        self.profiles = {p.name: p for p in Profile.objects.filter(tenant=self.tenant)}
        self.checked_requests: set[int] = set()
        self.configs_checked: dict[int, int] = {}
        self.steps_since_brake = 0
        self.checked_versions: set[int] = set(
            ProfileVersion.objects.filter(profile__tenant=self.tenant).values_list("pk", flat=True)
        )

    def teardown(self):
        self._clock.stop()
        transaction.set_rollback(True)
        self._atomic.__exit__(None, None, None)

    def attempt(self, name: str, call, *allowed: type[Exception]):
        """Run one step; an allowed domain refusal is an outcome, anything else fails."""
        try:
            result = call()
        except allowed as error:
            self.outcomes[f"{name}: {type(error).__name__}"] += 1
            return None
        self.outcomes[f"{name}: ok"] += 1
        return result

    # Steps ---------------------------------------------------------------------------

    @initialize(target=requests, data=st.data())
    def open_first_requests(self, data):
        """Each example starts with a request from each party's admin, so decisions matter."""
        self.steps["open_first_requests"] += 1
        opened = []
        for actor, profile in (("vendor-admin", "default"), ("customer-admin", "classified")):
            keys = data.draw(st.lists(st.sampled_from(self.adjustable), min_size=1, max_size=2))
            changes = {key: data.draw(self.value_strategies[key]) for key in keys}
            cr = self.attempt(
                "submit",
                lambda actor=actor, profile=profile, changes=changes: change_request_submit(
                    tenant=self.tenant,
                    profile=self.profiles[profile],
                    actor=User.objects.get(username=actor),
                    changes=changes,
                    justification="first",
                    base_version=1,
                ),
                ValidationFailed,
            )
            if cr is not None:
                opened.append(cr.pk)
        return multiple(*opened)

    @rule(
        target=requests,
        actor=st.sampled_from(MEMBERS) | st.sampled_from(ACTORS),
        profile=st.sampled_from(PROFILES),
        data=st.data(),
        base=st.sampled_from(["current"] * 6 + ["as read", "previous"]),
        time_box=st.sampled_from([None, None, None, 2, 30]),
    )
    def submit_profile_change(self, actor, profile, data, base, time_box):
        self.steps["submit_profile_change"] += 1
        keys = data.draw(st.lists(st.sampled_from(sorted(self.specs)), min_size=1, max_size=2))
        stored_profile = Profile.objects.select_related("tenant").get(pk=self.profiles[profile].pk)
        now = effective_config(profile=stored_profile)["values"]
        changes = {
            key: data.draw(self.value_strategies[key].filter(lambda v, key=key: v != now[key]))
            for key in keys
        }
        stored = stored_profile.current_version
        base_version = {
            "current": stored,
            "as read": self.profiles[profile].current_version,
            "previous": stored - 1,
        }[base]
        cr = self.attempt(
            "submit",
            lambda: change_request_submit(
                tenant=self.tenant,
                profile=self.profiles[profile],
                actor=User.objects.get(username=actor),
                changes=changes,
                justification="random",
                base_version=base_version,
                time_box=timedelta(hours=time_box) if time_box else None,
            ),
            NotAllowed,
            ValidationFailed,
            RedLineViolation,
            StaleBaseVersion,
        )
        return multiple() if cr is None else cr.pk

    @rule(
        target=requests,
        actor=st.sampled_from(ACTORS),
        changes=st.dictionaries(
            st.sampled_from(
                ["vendor.low", "customer.high", "vendor.critical", "customer.critical"]
            ),
            st.integers(0, 4),
            min_size=1,
            max_size=2,
        )
        | st.fixed_dictionaries({"vetoes_required": st.integers(1, 3)}),
    )
    def submit_policy_change(self, actor, changes):
        self.steps["submit_policy_change"] += 1
        cr = self.attempt(
            "submit policy",
            lambda: change_request_submit(
                tenant=self.tenant,
                actor=User.objects.get(username=actor),
                changes=changes,
                justification="random",
                base_version=quorum_policy_for(self.tenant).version,
            ),
            NotAllowed,
            ValidationFailed,
        )
        return multiple() if cr is None else cr.pk

    def open_request(self, data, fallback: int) -> int:
        """Mostly an open request (decisions on closed ones are refused, which is dull)."""
        open_ids = list(
            ChangeRequest.objects.filter(tenant=self.tenant, status__in=OPEN)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        if open_ids and data.draw(st.integers(0, 4)) > 0:
            return data.draw(st.sampled_from(open_ids))
        return fallback

    @rule(
        cr=requests,
        data=st.data(),
        people=st.permutations(ACTORS),
        count=st.integers(1, len(ACTORS)),
        verdicts=st.lists(
            st.sampled_from(["approve"] * 9 + ["reject"]),
            min_size=len(ACTORS),
            max_size=len(ACTORS),
        ),
    )
    def decide(self, cr, data, people, count, verdicts):
        """Some of the people, in random order, decide on one request: a review round."""
        self.steps["decide"] += 1
        decisions = list(zip(people[:count], verdicts, strict=False))
        cr = self.open_request(data, cr)
        if ChangeRequest.objects.get(pk=cr).status not in OPEN:
            decisions = decisions[:1]
        for actor, verdict in decisions:
            decided = self.attempt(
                "decide",
                lambda actor=actor, verdict=verdict: change_request_decide(
                    change_request_id=cr,
                    actor=User.objects.get(username=actor),
                    verdict=verdict,
                    channel="api",
                ),
                SelfApprovalForbidden,
                NotAllowed,
                AlreadyDecided,
                RequestNotPending,
            )
            if decided is not None and decided.status not in OPEN:
                break

    @rule(cr=requests, data=st.data(), actor=st.none() | st.sampled_from(ACTORS))
    def withdraw(self, cr, data, actor):
        """Mostly by the requester (actor None); sometimes by someone else."""
        self.steps["withdraw"] += 1
        cr = self.open_request(data, cr)
        user = (
            ChangeRequest.objects.get(pk=cr).requester
            if actor is None
            else User.objects.get(username=actor)
        )
        self.attempt(
            "withdraw",
            lambda: change_request_withdraw(change_request_id=cr, actor=user),
            NotAllowed,
            RequestNotPending,
        )

    @rule(
        username=st.sampled_from(MEMBERS),
        change=st.sampled_from(["remove", "reviewer", "reviewer", "admin", "viewer"]),
        party=st.sampled_from(Party.values),
    )
    def change_membership(self, username, change, party):
        """Remove a member, or add one (to either party) or change their role."""
        self.steps["change_membership"] += 1
        user = User.objects.get(username=username)
        if change == "remove":
            self.attempt(
                "remove member",
                lambda: membership_remove(tenant=self.tenant, user=user),
                NotFound,
            )
        else:
            self.attempt(
                "set member",
                lambda: membership_set(tenant=self.tenant, user=user, party=party, role=change),
                Conflict,
            )

    @rule(
        actor=st.sampled_from(ACTORS),
        keys=st.none()
        | st.lists(
            st.sampled_from(
                ["intel.foreign_analysis", "intel.domestic_pii_redaction", "usage.tool_access"]
            ),
            min_size=1,
            max_size=2,
            unique=True,
        ),
        which=st.sampled_from(["all", "default"]),
    )
    @precondition(lambda self: self.steps_since_brake >= 6)
    def pull_brake(self, actor, keys, which):
        """Not more than once in six steps: a brake voids every open request."""
        self.steps_since_brake = -1
        self.steps["pull_brake"] += 1
        profiles = None if which == "all" else [Profile.objects.get(pk=self.profiles[which].pk)]
        self.attempt(
            "brake",
            lambda: brake_pull(
                tenant=self.tenant,
                actor=User.objects.get(username=actor),
                reason="random",
                keys=keys,
                profiles=profiles,
            ),
            NotAllowed,
        )

    @rule(hours=st.sampled_from([0, 0, 1, 2, 6, 12, 80]))
    def jump_clock_and_sweep(self, hours):
        self.steps["jump_clock_and_sweep"] += 1
        self.now += timedelta(hours=hours)
        self.attempt("sweep", lambda: change_requests_sweep(now=self.now))

    # Invariants ----------------------------------------------------------------------

    @invariant()
    def every_applied_request_had_its_quorum(self):
        """Recounted from Decision rows and today's memberships, which are those at apply
        time: memberships change only in their own steps, after this check has run."""
        applied = list(
            ChangeRequest.objects.filter(tenant=self.tenant, status=RequestStatus.APPLIED).exclude(
                pk__in=self.checked_requests
            )
        )
        if not applied:
            return
        members = {
            m.user_id: m
            for m in Membership.objects.filter(tenant=self.tenant).select_related("user")
        }
        for cr in applied:
            approvals, rejections = Counter(), 0
            for decision in Decision.objects.filter(change_request=cr):
                member = members.get(decision.reviewer_id)
                if (
                    decision.reviewer_id == cr.requester_id
                    or member is None
                    or member.role != Role.REVIEWER
                    or member.party != decision.party
                    or not member.user.is_active
                ):
                    continue
                if decision.verdict == "approve":
                    approvals[decision.party] += 1
                else:
                    rejections += 1
            assert approvals["vendor"] >= cr.required_vendor, cr
            assert approvals["customer"] >= cr.required_customer, cr
            assert approvals["vendor"] + approvals["customer"] >= max(cr.required_any, 1), cr
            assert rejections < cr.vetoes_required, cr
            assert not Decision.objects.filter(change_request=cr, reviewer=cr.requester).exists()
            self.check_requirement(cr)
            self.checked_requests.add(cr.pk)
            direction = "loosening" if cr.is_loosening else "tightening"
            self.outcomes[f"applied {cr.kind} request, {direction}, quorum recounted"] += 1

    def check_requirement(self, cr):
        """A loosening asked for both parties, at least the floor of its highest tier."""
        if cr.kind == RequestKind.PROFILE:
            directions = {
                key: change_direction(self.specs[key], cr.previous[key], value).value
                for key, value in cr.changes.items()
            }
            assert directions == cr.directions
        loosening = Direction.LOOSENING.value in cr.directions.values()
        assert cr.is_loosening is loosening
        if loosening:
            assert cr.required_vendor >= floor(cr.risk_tier)
            assert cr.required_customer >= floor(cr.risk_tier)
        else:
            assert cr.required_any >= 1

    @invariant()
    def every_version_has_its_cause(self):
        self.every_applied_request_had_its_quorum()
        versions = (
            ProfileVersion.objects.filter(profile__tenant=self.tenant)
            .exclude(pk__in=self.checked_versions)
            .select_related("parent")
            .order_by("pk")
        )
        for version in versions:
            assert not any(self.specs[key].is_red_line for key in version.values)
            before = effective_values(self.specs.values(), version.parent.values)
            after = effective_values(self.specs.values(), version.values)
            changed = {key for key in after if after[key] != before[key]}
            assert changed
            if version.kind == VersionKind.CHANGE_REQUEST:
                cr = ChangeRequest.objects.get(pk=int(version.source.split(":")[1]))
                assert (cr.status, cr.applied_version, cr.profile_id) == (
                    RequestStatus.APPLIED,
                    version.number,
                    version.profile_id,
                )
                assert cr.pk in self.checked_requests
                assert changed <= set(cr.changes)
            elif version.kind in (VersionKind.BRAKE, VersionKind.GRANT_REVERT):
                for key in changed:
                    spec = self.specs[key]
                    assert change_direction(spec, before[key], after[key]) == Direction.TIGHTENING
                    if version.kind == VersionKind.BRAKE:
                        assert after[key] == safest_value(spec)
            else:
                raise AssertionError(f"unexpected version kind {version.kind}")
            self.checked_versions.add(version.pk)
            self.outcomes[f"new version of kind {version.kind} checked"] += 1

    @invariant()
    def red_lines_hold(self):
        """Read through effective_config for every profile whose version moved."""
        red_lines = {key: spec.fixed_value for key, spec in self.specs.items() if spec.is_red_line}
        for profile in Profile.objects.filter(tenant=self.tenant).select_related("tenant"):
            if self.configs_checked.get(profile.pk) == profile.current_version:
                continue
            config = effective_config(profile=profile)
            assert sorted(config["red_lines"]) == sorted(red_lines)
            assert {key: config["values"][key] for key in red_lines} == red_lines
            self.configs_checked[profile.pk] = profile.current_version

    @invariant()
    def open_requests_are_built_on_the_current_version(self):
        current = dict(
            Profile.objects.filter(tenant=self.tenant).values_list("pk", "current_version")
        )
        policy = QuorumPolicy.objects.filter(tenant=self.tenant).first()
        for cr in ChangeRequest.objects.filter(tenant=self.tenant, status__in=OPEN):
            if cr.kind == RequestKind.PROFILE:
                assert cr.base_version == current[cr.profile_id], cr
            else:
                assert cr.base_version == policy.version, cr

    @invariant()
    def count_steps_since_brake(self):
        self.steps_since_brake += 1

    @invariant()
    def audit_chain_verifies(self):
        assert audit_verify()[1] is None


@pytest.mark.django_db
def test_approval_engine__random_operations__invariants_hold_after_every_step(demo, make_user):
    tenant = demo.tenant
    profile_create(tenant=tenant, name="classified")
    for party in (Party.VENDOR, Party.CUSTOMER):
        membership_set(
            tenant=tenant, user=make_user(f"{party}-reviewer-3"), party=party, role=Role.REVIEWER
        )
    make_user("root", is_superuser=True, is_staff=True)
    quorum_policy_for(tenant)
    specs, value_strategies = catalog_strategies()
    ApprovalMachine.tenant = tenant
    ApprovalMachine.specs = specs
    ApprovalMachine.value_strategies = value_strategies
    ApprovalMachine.adjustable = sorted(key for key, spec in specs.items() if not spec.is_red_line)
    ApprovalMachine.steps.clear()
    ApprovalMachine.outcomes.clear()

    run_state_machine_as_test(
        ApprovalMachine,
        settings=settings(
            max_examples=MAX_EXAMPLES,
            stateful_step_count=STEPS_PER_EXAMPLE,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
        ),
    )

    steps = sum(ApprovalMachine.steps.values())
    print(f"\napproval state machine: {steps} steps in {MAX_EXAMPLES} examples")
    for name, count in sorted({**ApprovalMachine.steps, **ApprovalMachine.outcomes}.items()):
        print(f"  {name}: {count}")
    assert steps >= MAX_EXAMPLES * STEPS_PER_EXAMPLE // 4
    assert ApprovalMachine.outcomes["decide: ok"] > 0
    assert ApprovalMachine.outcomes["submit: ok"] > 0
