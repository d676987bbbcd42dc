"""What submit refuses, with the 4xx message it refuses with, and what it records."""

from datetime import timedelta

import pytest

from approvals.errors import NotAllowed
from approvals.models import RequestKind, RequestStatus
from approvals.services import change_request_digest, change_request_submit
from audit.models import AuditEvent
from config.errors import RedLineViolation, ValidationFailed
from tenants.models import Party, Role
from tenants.services import membership_set
from toggles.models import Profile, VersionKind
from toggles.services import NoChange, StaleBaseVersion, profile_version_create

from .conftest import (
    CRITICAL_BOOL,
    HIGH_BOOL,
    HIGH_ENUM,
    HIGH_INT,
    LOW_TEXT,
    SURVEILLANCE,
    WEAPONS,
    db_state,
    person,
    submit,
)


@pytest.mark.parametrize(
    ("changes", "error_class", "status", "message"),
    [
        (
            {"intel.mind_reading": True},
            ValidationFailed,
            400,
            "unknown capability 'intel.mind_reading'; GET /api/v1/capabilities lists the catalog",
        ),
        (
            {SURVEILLANCE: True},
            RedLineViolation,
            403,
            f"'{SURVEILLANCE}' is a red line: it can never be changed or removed",
        ),
        (
            {SURVEILLANCE: False},
            RedLineViolation,
            403,
            f"'{SURVEILLANCE}' is a red line: it can never be changed or removed",
        ),
        (
            {HIGH_ENUM: "off", WEAPONS: True},
            RedLineViolation,
            403,
            f"'{WEAPONS}' is a red line: it can never be changed or removed",
        ),
        (
            {HIGH_BOOL: "no"},
            ValidationFailed,
            400,
            f"'{HIGH_BOOL}' takes true or false, not 'no'",
        ),
        (
            {HIGH_INT: -1},
            ValidationFailed,
            400,
            f"'{HIGH_INT}' must be at least 0, not -1",
        ),
        (
            {HIGH_INT: 10_000_001},
            ValidationFailed,
            400,
            f"'{HIGH_INT}' must be at most 10000000, not 10000001",
        ),
        (
            {HIGH_ENUM: "everything"},
            ValidationFailed,
            400,
            f"'{HIGH_ENUM}' takes one of off, open_source_only, with_human_review, full, "
            "not 'everything'",
        ),
        (
            {LOW_TEXT: "X" * 65},
            ValidationFailed,
            400,
            f"'{LOW_TEXT}' takes at most 64 characters",
        ),
        (
            {HIGH_ENUM: "with_human_review"},
            NoChange,
            400,
            f"'{HIGH_ENUM}' is already 'with_human_review' in version 1; "
            "leave it out of the request",
        ),
        (
            {HIGH_ENUM: "off", CRITICAL_BOOL: False},
            NoChange,
            400,
            f"'{CRITICAL_BOOL}' is already False in version 1; leave it out of the request",
        ),
        (
            {},
            ValidationFailed,
            400,
            "changes must be a non-empty object of {capability key: new value}",
        ),
    ],
)
def test_submit__invalid_changes__refused_with_message(
    tenant, profile, changes, error_class, status, message
):
    before = db_state(profile)
    with pytest.raises(error_class) as error:
        submit(tenant, profile, "vendor-reviewer-1", changes)
    assert type(error.value) is error_class
    assert (error.value.status_code, str(error.value)) == (status, message)
    assert db_state(profile) == before


def test_submit__base_version_no_longer_current__stale_base_refused(tenant, profile):
    profile_version_create(
        profile=profile,
        changes={HIGH_ENUM: "off"},
        actor=None,
        reason="one-party tightening",
        kind=VersionKind.TIGHTENING,
    )
    before = db_state(profile)
    with pytest.raises(StaleBaseVersion) as error:
        submit(tenant, profile, "vendor-reviewer-1", {HIGH_BOOL: False}, base_version=1)
    assert str(error.value) == (
        "demo/default is at version 2, not 1; rebuild the change on the current version"
    )
    assert error.value.status_code == 409
    assert db_state(profile) == before


def test_submit__profile_object_read_before_a_new_version__stale_base_refused(tenant, profile):
    """The base is checked against the database, not against the caller's copy of the row."""
    read_earlier = Profile.objects.get(pk=profile.pk)
    profile_version_create(
        profile=profile,
        changes={HIGH_ENUM: "off"},
        actor=None,
        reason="one-party tightening",
        kind=VersionKind.TIGHTENING,
    )
    before = db_state(profile)
    with pytest.raises(StaleBaseVersion):
        change_request_submit(
            tenant=tenant,
            profile=read_earlier,
            actor=person("vendor-reviewer-1"),
            changes={HIGH_BOOL: False},
            justification="mission need",
            base_version=read_earlier.current_version,
        )
    assert db_state(profile) == before


@pytest.mark.parametrize("justification", ["", "   \n\t"])
def test_submit__empty_justification__refused(tenant, profile, justification):
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        submit(
            tenant, profile, "vendor-reviewer-1", {HIGH_ENUM: "off"}, justification=justification
        )
    assert str(error.value) == "a justification is required: say why the change is needed"
    assert db_state(profile) == before


@pytest.mark.parametrize(
    "changes",
    [{HIGH_ENUM: "off"}, {HIGH_ENUM: "off", HIGH_BOOL: False}],
    ids=["tightening", "tightening-and-loosening"],
)
def test_submit__time_box_on_a_tightening__refused(tenant, profile, changes):
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        submit(tenant, profile, "vendor-reviewer-1", changes, time_box=timedelta(hours=4))
    assert str(error.value) == (
        "a time box is for grants that only loosen: reverting a tightening would loosen "
        "without quorum; split the request"
    )
    assert db_state(profile) == before


@pytest.mark.parametrize(
    "changes",
    [{LOW_TEXT: "SECRET"}, {LOW_TEXT: "SECRET", HIGH_ENUM: "full"}],
    ids=["text", "text-and-loosening"],
)
def test_submit__time_box_over_a_text_setting__refused(tenant, profile, changes):
    """Every version written without a quorum only tightens; text has no safer side."""
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        submit(tenant, profile, "vendor-reviewer-1", changes, time_box=timedelta(hours=4))
    assert str(error.value) == (
        f"a time box cannot cover '{LOW_TEXT}': text has no safer side, so putting it back "
        "would be a change of its own that needs both parties; split the request"
    )
    assert db_state(profile) == before


@pytest.mark.parametrize("time_box", [timedelta(seconds=59), timedelta(days=30, seconds=1)])
def test_submit__time_box_out_of_range__refused(tenant, profile, time_box):
    before = db_state(profile)
    with pytest.raises(ValidationFailed) as error:
        submit(tenant, profile, "vendor-reviewer-1", {HIGH_ENUM: "full"}, time_box=time_box)
    assert str(error.value) == "a time box must be between 1 minute and 30 days"
    assert db_state(profile) == before


@pytest.mark.parametrize("username", ["auditor"])
def test_submit__member_without_propose_role__not_allowed(tenant, profile, username):
    before = db_state(profile)
    with pytest.raises(NotAllowed) as error:
        submit(tenant, profile, username, {HIGH_ENUM: "off"})
    assert str(error.value) == f"{username} may not propose changes in demo"
    assert db_state(profile) == before


def test_submit__viewer__not_allowed(tenant, profile, make_user):
    membership_set(tenant=tenant, user=make_user("viewer"), party=Party.VENDOR, role=Role.VIEWER)
    with pytest.raises(NotAllowed):
        submit(tenant, profile, "viewer", {HIGH_ENUM: "off"})


def test_submit__profile_of_another_tenant__refused(tenant, make_tenant):
    other = Profile.objects.get(tenant=make_tenant("acme"))
    before = db_state(other)
    with pytest.raises(ValidationFailed) as error:
        submit(tenant, other, "vendor-reviewer-1", {HIGH_ENUM: "off"})
    assert str(error.value) == "profile 'default' is not a profile of demo"
    assert db_state(other) == before


def test_submit__valid_loosening__pending_request_frozen_with_digest_and_audit(tenant, profile):
    cr = submit(
        tenant,
        profile,
        "customer-reviewer-1",
        {HIGH_ENUM: "full", HIGH_INT: 250_000.0},
        justification="  exercise support  ",
        time_box=timedelta(hours=6),
    )
    assert (cr.kind, cr.status, cr.base_version, cr.justification) == (
        RequestKind.PROFILE,
        RequestStatus.PENDING,
        1,
        "exercise support",
    )
    assert cr.changes == {HIGH_ENUM: "full", HIGH_INT: 250_000}
    assert cr.previous == {HIGH_ENUM: "with_human_review", HIGH_INT: 100_000}
    assert cr.directions == {HIGH_ENUM: "loosening", HIGH_INT: "loosening"}
    assert cr.expires_at - cr.created_at == timedelta(hours=72)
    assert cr.digest == change_request_digest(cr)
    event = AuditEvent.objects.get(action="change_request.submitted")
    assert (event.actor, event.target, event.data["digest"], event.data["required"]) == (
        "user:customer-reviewer-1",
        f"change_request:{cr.pk}",
        cr.digest,
        {"vendor": 2, "customer": 2, "any": 0},
    )
    assert profile.versions.count() == 1
