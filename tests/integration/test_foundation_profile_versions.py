"""DESIGN invariant 2: profile versions are append-only and written by one service only."""

import hashlib
import json
import math
import threading
import tomllib

import pytest
from django.conf import settings
from django.db import IntegrityError, connection, connections, transaction

from audit.models import AuditEvent
from config.errors import ValidationFailed
from toggles.models import Profile, ProfileVersion, VersionKind
from toggles.selectors import effective_config
from toggles.services import NoChange, StaleBaseVersion, profile_version_create

SURVEILLANCE = "redline.mass_domestic_surveillance"
WEAPONS = "redline.fully_autonomous_weapons"
PII = "intel.domestic_pii_redaction"
ANALYSIS = "intel.foreign_analysis"
RETENTION = "logging.retention_days"
SAMPLE_RATE = "logging.human_review_sample_rate"
BANNER = "classified.banner_text"

REBUILD = "rebuild the change on the current version"
UPDATE_REFUSED = "profile versions are append-only; a version can never be updated"
DELETE_REFUSED = "profile versions are append-only; a version can never be deleted"


def sha256_document(document) -> str:
    encoded = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "sha256:" + hashlib.sha256(encoded.encode()).hexdigest()


def version_rows() -> list[dict]:
    return list(ProfileVersion.objects.order_by("pk").values())


@pytest.fixture
def profile(make_tenant):
    return Profile.objects.get(tenant=make_tenant("acme"), name="default")


@pytest.fixture
def reviewer(make_user):
    return make_user("reviewer")


def create(profile, changes, *, actor=None, reason="tighten logging", **extra):
    return profile_version_create(
        profile=profile,
        changes=changes,
        actor=actor,
        reason=reason,
        kind=extra.pop("kind", VersionKind.CHANGE_REQUEST),
        **extra,
    )


@pytest.fixture
def two_versions(profile, reviewer):
    create(profile, {RETENTION: 730}, actor=reviewer, base_version=1)
    return version_rows()


# Writing versions ------------------------------------------------------------------------


def test_profile_create__new_profile__version_one_at_catalog_defaults(profile):
    first = ProfileVersion.objects.get(profile=profile)
    assert (first.number, first.values, first.parent, first.kind) == (1, {}, None, "initial")
    assert first.digest == sha256_document(
        {"tenant": "acme", "profile": "default", "version": 1, "parent": None, "values": {}}
    )
    assert profile.current_version == 1


def test_profile_version_create__valid_change__next_version_recorded_and_audited(profile, reviewer):
    events = AuditEvent.objects.count()
    version = create(
        profile,
        {RETENTION: 730, PII: True, ANALYSIS: "open_source_only"},
        actor=reviewer,
        reason="  tighten before the classified roll-out  ",
        kind=VersionKind.TIGHTENING,
        source="test",
        base_version=1,
    )
    version.refresh_from_db()
    values = {ANALYSIS: "open_source_only", PII: True, RETENTION: 730}
    assert (version.number, version.values, version.parent.number) == (2, values, 1)
    assert (version.kind, version.source, version.created_by) == ("tightening", "test", reviewer)
    assert version.reason == "tighten before the classified roll-out"
    assert version.digest == sha256_document(
        {"tenant": "acme", "profile": "default", "version": 2, "parent": 1, "values": values}
    )
    assert profile.current_version == 2
    assert Profile.objects.get(pk=profile.pk).current_version == 2
    assert AuditEvent.objects.count() == events + 1
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.actor, event.tenant, event.target) == (
        "profile_version.created",
        "user:reviewer",
        "acme",
        "profile:acme/default",
    )
    assert event.data["version"] == 2
    assert event.data["digest"] == version.digest
    assert event.data["changes"][RETENTION] == {"from": None, "to": 730}


def test_profile_version_create__keeps_parent_values_and_overlays_changes(two_versions, profile):
    version = create(profile, {SAMPLE_RATE: 0.5})
    assert version.values == {RETENTION: 730, SAMPLE_RATE: 0.5}
    assert version.parent.number == 2


def test_version_digest__values_change__digest_changes(profile):
    second = create(profile, {RETENTION: 730})
    third = create(profile, {RETENTION: 731})
    fourth = create(profile, {RETENTION: 730})
    digests = {second.digest, third.digest, fourth.digest}
    assert len(digests) == 3
    assert fourth.digest == sha256_document(
        {"tenant": "acme", "profile": "default", "version": 4, "parent": 3, "values": fourth.values}
    )


def test_profile_version_create__stale_base_version__refused_and_nothing_written(
    two_versions, profile
):
    events = AuditEvent.objects.count()
    with pytest.raises(StaleBaseVersion) as error:
        create(profile, {RETENTION: 1000}, base_version=1)
    assert str(error.value) == (
        "acme/default is at version 2, not 1; rebuild the change on the current version"
    )
    assert version_rows() == two_versions
    assert Profile.objects.get(pk=profile.pk).current_version == 2
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize(
    "changes",
    [{RETENTION: 730}, {RETENTION: 730.0}, {ANALYSIS: "with_human_review"}, {PII: True}],
    ids=["same-as-parent", "same-as-parent-as-float", "catalog-default", "default-bool"],
)
def test_profile_version_create__no_effective_change__refused(two_versions, profile, changes):
    with pytest.raises(NoChange) as error:
        create(profile, changes)
    assert str(error.value) == "the change leaves acme/default exactly as version 2"
    assert version_rows() == two_versions


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({}, "changes must be a non-empty object of {capability key: new value}"),
        ([RETENTION], "changes must be a non-empty object of {capability key: new value}"),
        (
            {"intel.everything": True},
            "unknown capability 'intel.everything'; GET /api/v1/capabilities lists the catalog",
        ),
        ({PII: 0}, f"'{PII}' takes true or false, not 0"),
        ({PII: "false"}, f"'{PII}' takes true or false, not 'false'"),
        ({RETENTION: True}, f"'{RETENTION}' takes a whole number, not True"),
        ({RETENTION: 1.5}, f"'{RETENTION}' takes a whole number, not 1.5"),
        ({RETENTION: "730"}, f"'{RETENTION}' takes a whole number, not '730'"),
        ({RETENTION: math.nan}, f"'{RETENTION}' takes a whole number, not nan"),
        ({RETENTION: 29}, f"'{RETENTION}' must be at least 30, not 29"),
        ({RETENTION: 3651}, f"'{RETENTION}' must be at most 3650, not 3651"),
        ({SAMPLE_RATE: math.nan}, f"'{SAMPLE_RATE}' takes a finite number, not nan"),
        ({SAMPLE_RATE: math.inf}, f"'{SAMPLE_RATE}' takes a finite number, not inf"),
        ({SAMPLE_RATE: 1.01}, f"'{SAMPLE_RATE}' must be at most 1, not 1.01"),
        ({SAMPLE_RATE: None}, f"'{SAMPLE_RATE}' takes a number, not None"),
        (
            {ANALYSIS: "everything"},
            f"'{ANALYSIS}' takes one of off, open_source_only, with_human_review, full, "
            "not 'everything'",
        ),
        ({BANNER: "S" * 65}, f"'{BANNER}' takes at most 64 characters"),
        ({BANNER: 7}, f"'{BANNER}' takes text, not 7"),
    ],
)
def test_profile_version_create__invalid_change__refused_saying_what_fits(
    two_versions, profile, changes, message
):
    events = AuditEvent.objects.count()
    with pytest.raises(ValidationFailed) as error:
        create(profile, changes)
    assert type(error.value) is ValidationFailed
    assert str(error.value) == message
    assert version_rows() == two_versions
    assert AuditEvent.objects.count() == events


@pytest.mark.parametrize("reason", ["", "   \n\t", None])
def test_profile_version_create__no_reason__refused(two_versions, profile, reason):
    with pytest.raises(ValidationFailed) as error:
        create(profile, {RETENTION: 1000}, reason=reason)
    assert str(error.value) == "a reason is required for every new version"
    assert version_rows() == two_versions


@pytest.mark.parametrize("kind", ["initial", "manual", ""])
def test_profile_version_create__kind_not_allowed__refused(two_versions, profile, kind):
    with pytest.raises(ValidationFailed) as error:
        create(profile, {RETENTION: 1000}, kind=kind)
    assert str(error.value) == f"a new version cannot be of kind {kind!r}"
    assert version_rows() == two_versions


# Append-only: every path refused ----------------------------------------------------------


def test_profile_version_save__existing_version__refused(two_versions):
    version = ProfileVersion.objects.get(number=2)
    version.values = {RETENTION: 30}
    with pytest.raises(PermissionError) as error:
        version.save()
    assert str(error.value) == UPDATE_REFUSED
    assert version_rows() == two_versions


def test_profile_version_save__new_instance_reusing_a_pk__refused_by_database(two_versions):
    existing = ProfileVersion.objects.get(number=2)
    copy = ProfileVersion(**{**ProfileVersion.objects.filter(pk=existing.pk).values().get()})
    copy.values = {RETENTION: 30}
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        copy.save()
    assert error.value.__cause__.diag.message_primary == (
        f"profile versions are append-only: UPDATE of version {existing.pk} refused"
    )
    assert version_rows() == two_versions


def test_profile_version_delete__existing_version__refused(two_versions):
    with pytest.raises(PermissionError) as error:
        ProfileVersion.objects.get(number=2).delete()
    assert str(error.value) == DELETE_REFUSED
    assert version_rows() == two_versions


def test_profile_version_queryset_update__refused(two_versions):
    with pytest.raises(PermissionError) as error:
        ProfileVersion.objects.filter(number=2).update(values={RETENTION: 30})
    assert str(error.value) == UPDATE_REFUSED
    assert version_rows() == two_versions


def test_profile_version_queryset_delete__refused(two_versions):
    with pytest.raises(PermissionError) as error:
        ProfileVersion.objects.all().delete()
    assert str(error.value) == DELETE_REFUSED
    assert version_rows() == two_versions


def test_profile_version_queryset_bulk_update__refused(two_versions):
    version = ProfileVersion.objects.get(number=2)
    version.values = {RETENTION: 30}
    with pytest.raises(PermissionError) as error:
        ProfileVersion.objects.bulk_update([version], ["values"])
    assert str(error.value) == UPDATE_REFUSED
    assert version_rows() == two_versions


def test_profile_version_queryset_bulk_create__refused(two_versions, profile):
    version = ProfileVersion(
        profile=profile, number=3, values={}, kind="brake", reason="x", digest="sha256:x"
    )
    with pytest.raises(PermissionError) as error:
        ProfileVersion.objects.bulk_create([version])
    assert str(error.value) == (
        "profile versions are written only by toggles.services.profile_version_create"
    )
    assert version_rows() == two_versions


@pytest.mark.parametrize(
    ("sql", "operation"),
    [
        ("UPDATE toggles_profileversion SET \"values\" = '{}'::jsonb WHERE id = %s", "UPDATE"),
        ("UPDATE toggles_profileversion SET reason = 'rewritten' WHERE id = %s", "UPDATE"),
        ("UPDATE toggles_profileversion SET number = 9 WHERE id = %s", "UPDATE"),
        ("DELETE FROM toggles_profileversion WHERE id = %s", "DELETE"),
    ],
)
def test_raw_sql__existing_version__refused_by_trigger(two_versions, sql, operation):
    version = ProfileVersion.objects.get(number=2)
    with pytest.raises(IntegrityError) as error, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, [version.pk])
    assert error.value.__cause__.diag.message_primary == (
        f"profile versions are append-only: {operation} of version {version.pk} refused"
    )
    assert version_rows() == two_versions


# Effective config --------------------------------------------------------------------------


@pytest.fixture
def catalog_defaults():
    """Each capability's value in a profile that changed nothing, read from the file."""
    with open(settings.REDLINE_CATALOG_PATH, "rb") as handle:
        entries = tomllib.load(handle)["capability"]
    return {e["key"]: e["value"] if e.get("red_line") else e["default"] for e in entries}


def test_effective_config__version_one__catalog_defaults_with_red_lines(profile, catalog_defaults):
    config = effective_config(profile=profile)
    assert (config["tenant"], config["profile"], config["version"]) == ("acme", "default", 1)
    assert config["values"] == catalog_defaults
    assert list(config["values"]) == sorted(catalog_defaults)
    assert config["red_lines"] == [WEAPONS, SURVEILLANCE]
    assert config["values"][SURVEILLANCE] is False
    assert config["values"][WEAPONS] is False


def test_effective_config__later_version__defaults_overlaid_by_its_values(
    two_versions, profile, catalog_defaults
):
    create(profile, {ANALYSIS: "off", BANNER: "SECRET//NOFORN"})
    assert effective_config(profile=profile)["values"] == {
        **catalog_defaults,
        RETENTION: 730,
        ANALYSIS: "off",
        BANNER: "SECRET//NOFORN",
    }
    assert effective_config(profile=profile, number=2)["values"] == {
        **catalog_defaults,
        RETENTION: 730,
    }


def test_effective_config__stored_values_naming_red_lines__red_lines_still_forced(
    profile, catalog_defaults
):
    """Defence in depth: even a version smuggled past the insert trigger cannot move a red line."""
    parent = ProfileVersion.objects.get(profile=profile)
    with connection.cursor() as cursor:
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(
            "ALTER TABLE toggles_profileversion DISABLE TRIGGER profile_version_no_red_lines"
        )
        cursor.execute(
            """
            INSERT INTO toggles_profileversion (profile_id, number, "values", parent_id, kind,
                source, reason, digest, created_at)
            VALUES (%s, 2, %s::jsonb, %s, 'change_request', '', 'smuggled', 'sha256:x', now())
            """,
            [profile.pk, json.dumps({SURVEILLANCE: True, WEAPONS: True, PII: False}), parent.pk],
        )
        cursor.execute(
            "ALTER TABLE toggles_profileversion ENABLE TRIGGER profile_version_no_red_lines"
        )
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")
    Profile.objects.filter(pk=profile.pk).update(current_version=2)
    profile.refresh_from_db()
    values = effective_config(profile=profile)["values"]
    assert values == {**catalog_defaults, PII: False}
    assert (values[SURVEILLANCE], values[WEAPONS]) == (False, False)


# Concurrency -------------------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_profile_version_create__two_writers_on_the_same_base__exactly_one_wins(make_tenant):
    profile = Profile.objects.get(tenant=make_tenant("race"), name="default")
    barrier = threading.Barrier(2)
    outcomes = []

    def write(value):
        try:
            barrier.wait()
            with transaction.atomic():
                version = create(profile, {RETENTION: value}, base_version=1)
            outcomes.append(("created", version.number))
        except StaleBaseVersion as error:
            outcomes.append(("stale", str(error)))
        finally:
            connections.close_all()

    threads = [threading.Thread(target=write, args=(value,)) for value in (100, 200)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(outcomes) == [
        ("created", 2),
        ("stale", f"race/default is at version 2, not 1; {REBUILD}"),
    ]
    numbers = ProfileVersion.objects.filter(profile=profile).values_list("number", flat=True)
    assert list(numbers) == [1, 2]
