"""Either party can pull the brake: chosen or all settings to their safest values, at once."""

import pytest

from approvals.errors import NotAllowed
from approvals.models import RequestStatus
from approvals.services import brake_pull
from audit.models import AuditEvent
from config.errors import RedLineViolation, ValidationFailed
from tenants.models import Party, Role
from tenants.services import membership_set
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion, VersionKind
from toggles.values import Direction, change_direction, safest_value

from .conftest import (
    CRITICAL_BOOL,
    CRITICAL_ENUM,
    HIGH_BOOL,
    HIGH_ENUM,
    HIGH_INT,
    LOW_TEXT,
    SURVEILLANCE,
    approve_all,
    db_state,
    person,
    submit,
    values_of,
)

BOTH_PARTIES = (
    "vendor-reviewer-1",
    "vendor-reviewer-2",
    "customer-reviewer-1",
    "customer-reviewer-2",
)
BRAKED = {
    HIGH_ENUM: "off",
    HIGH_BOOL: True,
    HIGH_INT: 0,
    CRITICAL_BOOL: False,
    CRITICAL_ENUM: "none",
}


def loosen_everything(tenant, profile) -> None:
    cr = submit(
        tenant,
        profile,
        "vendor-admin",
        {
            HIGH_ENUM: "full",
            HIGH_BOOL: False,
            HIGH_INT: 9_000_000,
            CRITICAL_BOOL: True,
            CRITICAL_ENUM: "engineering",
            LOW_TEXT: "SECRET",
        },
    )
    approve_all(cr, *BOTH_PARTIES)
    assert cr.status == RequestStatus.APPLIED


def assert_only_tightened(version: ProfileVersion) -> dict:
    """Every value the version changed is its capability's safest, and moved that way."""
    specs = {c.key: c.spec() for c in Capability.objects.all()}
    before = effective_values(specs.values(), version.parent.values)
    after = effective_values(specs.values(), version.values)
    changed = {key: after[key] for key in after if after[key] != before[key]}
    for key, value in changed.items():
        assert value == safest_value(specs[key])
        assert change_direction(specs[key], before[key], value) == Direction.TIGHTENING
    return changed


@pytest.mark.parametrize(
    "username", ["vendor-admin", "vendor-reviewer-2", "customer-admin", "customer-reviewer-1"]
)
def test_brake__admin_or_reviewer_of_either_party__tightens_at_once(tenant, profile, username):
    loosen_everything(tenant, profile)
    result = brake_pull(tenant=tenant, actor=person(username), reason="  suspected misuse  ")
    assert (result.versions, result.unchanged) == ({"default": 3}, [])
    version = ProfileVersion.objects.get(profile=profile, number=3)
    party = "vendor" if username.startswith("vendor") else "customer"
    assert (version.kind, version.source, version.reason, version.created_by.username) == (
        VersionKind.BRAKE,
        f"brake:{party}",
        "emergency brake: suspected misuse",
        username,
    )
    changed = assert_only_tightened(version)
    assert {key: changed[key] for key in BRAKED} == BRAKED
    assert values_of(profile)[LOW_TEXT] == "SECRET"
    event = AuditEvent.objects.get(action="brake.pulled")
    assert (event.actor, event.target, event.data) == (
        f"user:{username}",
        "tenant:demo",
        {
            "party": party,
            "reason": "suspected misuse",
            "capabilities": "all",
            "versions": {"default": 3},
            "unchanged": [],
        },
    )


def test_brake__from_defaults__sets_every_adjustable_setting_to_safest(tenant, profile):
    brake_pull(tenant=tenant, actor=person("customer-reviewer-2"), reason="stand down")
    version = ProfileVersion.objects.get(profile=profile, number=2)
    assert_only_tightened(version)
    values = values_of(profile)
    for capability in Capability.objects.filter(is_red_line=False):
        safe = safest_value(capability.spec())
        if safe is not None:
            assert values[capability.key] == safe


def test_brake__chosen_keys__only_those_change(tenant, profile):
    loosen_everything(tenant, profile)
    result = brake_pull(
        tenant=tenant,
        actor=person("customer-reviewer-1"),
        reason="scope review",
        keys=[HIGH_ENUM, CRITICAL_BOOL],
    )
    assert result.versions == {"default": 3}
    changed = assert_only_tightened(ProfileVersion.objects.get(profile=profile, number=3))
    assert changed == {HIGH_ENUM: "off", CRITICAL_BOOL: False}
    event = AuditEvent.objects.get(action="brake.pulled")
    assert event.data["capabilities"] == [HIGH_ENUM, CRITICAL_BOOL]


def test_brake__already_at_safest__no_version_reported_unchanged(tenant, profile):
    brake_pull(tenant=tenant, actor=person("vendor-admin"), reason="first", keys=[HIGH_ENUM])
    result = brake_pull(
        tenant=tenant, actor=person("vendor-admin"), reason="again", keys=[HIGH_ENUM]
    )
    assert (result.versions, result.unchanged) == ({}, ["default"])
    assert profile.versions.count() == 2
    assert AuditEvent.objects.filter(action="brake.pulled").count() == 2


def test_brake__nothing_left_to_tighten__open_requests_still_voided(tenant, profile):
    brake_pull(tenant=tenant, actor=person("vendor-admin"), reason="first", keys=[HIGH_ENUM])
    loosening = submit(tenant, profile, "customer-admin", {HIGH_ENUM: "full"})
    approve_all(loosening, "vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1")
    result = brake_pull(
        tenant=tenant, actor=person("customer-reviewer-2"), reason="again", keys=[HIGH_ENUM]
    )
    assert (result.versions, result.unchanged) == ({}, ["default"])
    loosening.refresh_from_db()
    assert (loosening.status, loosening.status_reason) == (
        RequestStatus.STALE,
        "an emergency brake was pulled on demo/default before the request was applied",
    )
    assert values_of(profile)[HIGH_ENUM] == "off"
    assert profile.versions.count() == 2


def test_brake__pending_requests_on_the_profile__become_stale(tenant, profile, make_tenant):
    loosening = submit(tenant, profile, "vendor-admin", {HIGH_BOOL: False})
    banner = submit(tenant, profile, "customer-admin", {LOW_TEXT: "UNCLASSIFIED//FOUO"})
    other = Profile.objects.get(tenant=make_tenant("acme"))
    elsewhere = submit(other.tenant, other, "acme-vendor-admin", {HIGH_BOOL: False})
    brake_pull(tenant=tenant, actor=person("customer-reviewer-1"), reason="halt", keys=[HIGH_ENUM])
    for cr in (loosening, banner):
        cr.refresh_from_db()
        assert (cr.status, cr.status_reason) == (
            RequestStatus.STALE,
            "demo/default moved to version 2 before the request (built on version 1) was applied",
        )
        event = AuditEvent.objects.filter(target=f"change_request:{cr.pk}").last()
        assert (event.action, event.actor) == ("change_request.stale", "user:customer-reviewer-1")
    elsewhere.refresh_from_db()
    assert elsewhere.status == RequestStatus.PENDING


def test_brake__red_line_key__red_line_violation(tenant, profile):
    before = db_state(profile)
    with pytest.raises(RedLineViolation) as error:
        brake_pull(
            tenant=tenant, actor=person("vendor-admin"), reason="x", keys=[HIGH_ENUM, SURVEILLANCE]
        )
    assert str(error.value) == (
        f"'{SURVEILLANCE}' is a red line: it can never be changed or removed; "
        "it is already fixed at its safe value"
    )
    assert db_state(profile) == before


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([LOW_TEXT], f"'{LOW_TEXT}' is text and has no safer side; a brake cannot set it"),
        (["intel.nothing"], "unknown capability 'intel.nothing'"),
        ([], "name the capabilities to brake, or brake all of them"),
    ],
)
def test_brake__unbrakeable_keys__validation_failed(tenant, profile, keys, message):
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        brake_pull(tenant=tenant, actor=person("vendor-admin"), reason="x", keys=keys)
    assert str(error.value) == message
    assert db_state(profile) == before


@pytest.mark.parametrize("reason", ["", "   "])
def test_brake__no_reason__validation_failed(tenant, profile, reason):
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        brake_pull(tenant=tenant, actor=person("vendor-admin"), reason=reason)
    assert str(error.value) == "a reason is required to pull the brake"
    assert db_state(profile) == before


def test_brake__auditor_viewer_or_outsider__not_allowed(tenant, profile, make_user):
    viewer = make_user("viewer")
    membership_set(tenant=tenant, user=viewer, party=Party.VENDOR, role=Role.VIEWER)
    outsider = make_user("root", is_superuser=True, is_staff=True)
    before = db_state(profile)
    for actor in (person("auditor"), viewer, outsider):
        with pytest.raises(NotAllowed) as error:
            brake_pull(tenant=tenant, actor=actor, reason="x")
        assert str(error.value) == "only admins and reviewers of demo may pull the brake"
    assert db_state(profile) == before


def test_brake__profile_of_another_tenant__refused_and_nothing_written(
    tenant, profile, make_tenant
):
    other = Profile.objects.get(tenant=make_tenant("acme"))
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        brake_pull(
            tenant=tenant, actor=person("vendor-admin"), reason="x", profiles=[profile, other]
        )
    assert str(error.value) == "profile 'default' is not a profile of demo"
    assert db_state(profile) == before
