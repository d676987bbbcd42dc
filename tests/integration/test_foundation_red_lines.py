"""DESIGN invariant 1: a red line can never change or be removed, by any path.

Each test tries one path (service, model, queryset, raw SQL, admin) and checks both the
exact refusal and that the catalog rows are exactly as they were.
"""

import pytest
from django.db import IntegrityError, connection, transaction
from django.urls import reverse

from audit.models import AuditEvent
from config.errors import RedLineViolation
from toggles.models import Capability, Profile, ProfileVersion, VersionKind
from toggles.services import profile_version_create

SURVEILLANCE = "redline.mass_domestic_surveillance"
WEAPONS = "redline.fully_autonomous_weapons"
ADJUSTABLE = "intel.domestic_pii_redaction"
RED_LINE_MESSAGE = f"'{SURVEILLANCE}' is a red line: it can never be changed or removed"
PROMOTION_MESSAGE = "red lines are added only through the catalog (sync_catalog)"


def catalog_rows() -> list[dict]:
    return list(Capability.objects.order_by("key").values())


def trigger_refusal(sql: str, params=()) -> str:
    """Run one statement in a savepoint; return the message the database refused it with."""
    with pytest.raises(IntegrityError) as error, transaction.atomic(), connection.cursor() as cur:
        cur.execute(sql, params)
    assert error.value.__cause__.sqlstate == "23001"
    return error.value.__cause__.diag.message_primary


@pytest.fixture
def before(catalog):
    rows = catalog_rows()
    assert [row["key"] for row in rows if row["is_red_line"]] == [WEAPONS, SURVEILLANCE]
    return rows


# Service ---------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [True, False])
def test_profile_version_create__red_line_key__refused_naming_it(before, make_tenant, value):
    profile = Profile.objects.get(tenant=make_tenant("acme"), name="default")
    versions, events = ProfileVersion.objects.count(), AuditEvent.objects.count()
    with pytest.raises(RedLineViolation) as error:
        profile_version_create(
            profile=profile,
            changes={SURVEILLANCE: value, ADJUSTABLE: False},
            actor=None,
            reason="try it",
            kind=VersionKind.CHANGE_REQUEST,
        )
    assert str(error.value) == RED_LINE_MESSAGE
    profile.refresh_from_db()
    assert profile.current_version == 1
    assert ProfileVersion.objects.count() == versions
    assert AuditEvent.objects.count() == events
    assert catalog_rows() == before


def test_profile_version_create__red_line_with_stale_base__red_line_refused_first(
    before, make_tenant
):
    """The service names the red line before it even locks the profile or checks the base."""
    profile = Profile.objects.get(tenant=make_tenant("acme"), name="default")
    profile_version_create(
        profile=profile, changes={ADJUSTABLE: False}, actor=None, reason="r", kind="brake"
    )
    with pytest.raises(RedLineViolation) as error:
        profile_version_create(
            profile=profile,
            changes={SURVEILLANCE: True},
            actor=None,
            reason="try it",
            kind=VersionKind.CHANGE_REQUEST,
            base_version=1,
        )
    assert str(error.value) == RED_LINE_MESSAGE
    assert ProfileVersion.objects.filter(profile=profile).count() == 2


def test_profile_version_save__new_version_holding_red_line__refused(before, make_tenant):
    profile = Profile.objects.get(tenant=make_tenant("acme"), name="default")
    version = ProfileVersion(
        profile=profile,
        number=2,
        values={WEAPONS: True},
        kind=VersionKind.CHANGE_REQUEST,
        reason="bypass the service",
        digest="sha256:x",
    )
    with pytest.raises(RedLineViolation) as error:
        version.save()
    assert str(error.value) == f"'{WEAPONS}' is a red line: it can never be changed or removed"
    assert list(ProfileVersion.objects.filter(profile=profile).values_list("number")) == [(1,)]


# Model -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [("fixed_value", True), ("title", "Allowed after all"), ("is_red_line", False)],
)
def test_capability_save__red_line_field_changed__refused(before, field, value):
    red = Capability.objects.get(key=SURVEILLANCE)
    setattr(red, field, value)
    with pytest.raises(RedLineViolation) as error:
        red.save()
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_capability_save__unchanged_red_line__refused(before):
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.get(key=SURVEILLANCE).save()
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_capability_save__new_instance_with_a_red_lines_pk__refused(before):
    red = Capability.objects.get(key=SURVEILLANCE)
    impostor = Capability(
        pk=red.pk,
        key=SURVEILLANCE,
        title="Impostor",
        description="-",
        category="Red lines",
        value_type="bool",
        risk_tier="critical",
        is_red_line=True,
        fixed_value=True,
    )
    with pytest.raises(RedLineViolation) as error:
        impostor.save()
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_capability_save__adjustable_promoted_to_red_line__refused(before):
    adjustable = Capability.objects.get(key=ADJUSTABLE)
    adjustable.is_red_line = True
    adjustable.fixed_value = True
    with pytest.raises(RedLineViolation) as error:
        adjustable.save()
    assert str(error.value) == PROMOTION_MESSAGE
    assert catalog_rows() == before


def test_capability_delete__red_line__refused(before):
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.get(key=SURVEILLANCE).delete()
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_capability_delete__stale_instance_that_thinks_it_is_adjustable__refused(before):
    red = Capability.objects.get(key=SURVEILLANCE)
    red.is_red_line = False
    with pytest.raises(RedLineViolation) as error:
        red.delete()
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


# Querysets -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("queryset", "named"),
    [
        (lambda: Capability.objects.filter(key=SURVEILLANCE), SURVEILLANCE),
        (lambda: Capability.objects.all(), WEAPONS),
        (lambda: Capability.objects.filter(risk_tier="critical"), WEAPONS),
    ],
    ids=["one", "all", "critical"],
)
def test_queryset_update__reaches_a_red_line__refused_naming_the_first(before, queryset, named):
    with pytest.raises(RedLineViolation) as error:
        queryset().update(fixed_value=True, title="changed")
    assert str(error.value) == f"'{named}' is a red line: it can never be changed or removed"
    assert catalog_rows() == before


def test_queryset_update__promotes_adjustables__refused(before):
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.filter(key=ADJUSTABLE).update(is_red_line=True, fixed_value=True)
    assert str(error.value) == PROMOTION_MESSAGE
    assert catalog_rows() == before


def test_queryset_delete__reaches_a_red_line__refused_and_nothing_deleted(before):
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.filter(key__in=[SURVEILLANCE, ADJUSTABLE]).delete()
    assert str(error.value) == RED_LINE_MESSAGE
    with pytest.raises(RedLineViolation):
        Capability.objects.all().delete()
    assert catalog_rows() == before


def test_queryset_bulk_update__red_line__refused(before):
    red = Capability.objects.get(key=SURVEILLANCE)
    adjustable = Capability.objects.get(key=ADJUSTABLE)
    red.fixed_value = True
    adjustable.title = "changed"
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.bulk_update([adjustable, red], ["fixed_value", "title"])
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_queryset_bulk_update__red_line_instance_relabelled_adjustable__refused(before):
    red = Capability.objects.get(key=SURVEILLANCE)
    red.is_red_line = False
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.bulk_update([red], ["is_red_line"])
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_queryset_bulk_update__promotes_adjustable__refused(before):
    adjustable = Capability.objects.get(key=ADJUSTABLE)
    adjustable.is_red_line = True
    adjustable.fixed_value = True
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.bulk_update([adjustable], ["is_red_line", "fixed_value"])
    assert str(error.value) == PROMOTION_MESSAGE
    assert catalog_rows() == before


def red_line_copy(**changes) -> Capability:
    row = Capability.objects.filter(key=SURVEILLANCE).values().get()
    row.pop("id")
    return Capability(**{**row, **changes})


def test_queryset_bulk_create__update_conflicts_on_a_red_line__refused(before):
    with pytest.raises(RedLineViolation) as error:
        Capability.objects.bulk_create(
            [red_line_copy(fixed_value=True, is_red_line=False)],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=["fixed_value", "is_red_line"],
        )
    assert str(error.value) == RED_LINE_MESSAGE
    assert catalog_rows() == before


def test_queryset_bulk_create__update_conflicts_promoting_adjustable__refused_by_database(
    before,
):
    row = Capability.objects.filter(key=ADJUSTABLE).values().get()
    row.pop("id")
    promoted = Capability(**{**row, "is_red_line": True, "fixed_value": True})
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        Capability.objects.bulk_create(
            [promoted],
            update_conflicts=True,
            unique_fields=["key"],
            update_fields=["is_red_line", "fixed_value"],
        )
    assert error.value.__cause__.diag.message_primary == (
        f"capability {ADJUSTABLE} cannot become a red line; add a red line under a new key"
    )
    assert catalog_rows() == before


def test_queryset_bulk_create__duplicate_red_line_without_update__unique_key_refuses(before):
    with pytest.raises(IntegrityError) as error, transaction.atomic():
        Capability.objects.bulk_create([red_line_copy(fixed_value=True)])
    assert error.value.__cause__.diag.constraint_name == "toggles_capability_key_key"
    assert catalog_rows() == before


def test_queryset_bulk_create__new_red_line__added(before):
    Capability.objects.bulk_create([red_line_copy(key="redline.new_fixed_line")])
    assert Capability.objects.get(key="redline.new_fixed_line").is_red_line is True


# Raw SQL: PostgreSQL itself refuses -----------------------------------------------------


@pytest.mark.parametrize(
    "assignment",
    [
        "fixed_value = 'true'::jsonb",
        "is_red_line = false",
        "title = 'Allowed after all'",
        "description = description",
        "key = 'redline.renamed'",
    ],
)
def test_raw_update__red_line__refused_by_trigger(before, assignment):
    message = trigger_refusal(
        f"UPDATE toggles_capability SET {assignment} WHERE key = %s",
        [SURVEILLANCE],
    )
    assert message == f"red line {SURVEILLANCE} can never change"
    assert catalog_rows() == before


def test_raw_update__whole_table__refused_at_the_first_red_line(before):
    message = trigger_refusal("UPDATE toggles_capability SET title = title || ' (edited)'")
    assert message in {
        f"red line {SURVEILLANCE} can never change",
        f"red line {WEAPONS} can never change",
    }
    assert catalog_rows() == before


def test_raw_delete__red_line__refused_by_trigger(before):
    message = trigger_refusal("DELETE FROM toggles_capability WHERE key = %s", [WEAPONS])
    assert message == f"red line {WEAPONS} can never be removed"
    assert catalog_rows() == before


def test_raw_delete__whole_table__refused_and_nothing_deleted(before):
    trigger_refusal("DELETE FROM toggles_capability")
    assert catalog_rows() == before


INSERT_RED_LINE = """
INSERT INTO toggles_capability (key, title, description, category, value_type, risk_tier,
    is_red_line, fixed_value, "default", choices, safer, created_at, updated_at)
VALUES (%s, 'Allowed', 'now allowed', 'Red lines', 'bool', 'low', %s, 'true'::jsonb,
    'true'::jsonb, '[]'::jsonb, '', now(), now())
"""


def test_raw_insert_on_conflict_do_update__red_line__refused_by_trigger(before):
    message = trigger_refusal(
        INSERT_RED_LINE + " ON CONFLICT (key) DO UPDATE SET fixed_value = EXCLUDED.fixed_value,"
        " is_red_line = EXCLUDED.is_red_line, title = EXCLUDED.title",
        [SURVEILLANCE, False],
    )
    assert message == f"red line {SURVEILLANCE} can never change"
    assert catalog_rows() == before


@pytest.mark.parametrize(
    ("sql", "params"),
    [
        (
            "UPDATE toggles_capability SET is_red_line = true, fixed_value = 'true'::jsonb"
            " WHERE key = %s",
            [ADJUSTABLE],
        ),
        (
            INSERT_RED_LINE + " ON CONFLICT (key) DO UPDATE SET is_red_line = true,"
            " fixed_value = 'true'::jsonb",
            [ADJUSTABLE, True],
        ),
    ],
    ids=["update", "upsert"],
)
def test_raw_sql__promote_adjustable_to_red_line__refused_by_trigger(before, sql, params):
    message = trigger_refusal(sql, params)
    assert message == (
        f"capability {ADJUSTABLE} cannot become a red line; add a red line under a new key"
    )
    assert catalog_rows() == before


def test_raw_update__adjustable_text__allowed(before):
    with connection.cursor() as cursor:
        cursor.execute(
            "UPDATE toggles_capability SET title = 'Edited' WHERE key = %s", [ADJUSTABLE]
        )
    assert Capability.objects.get(key=ADJUSTABLE).title == "Edited"


def test_raw_insert__new_red_line__allowed(before):
    with connection.cursor() as cursor:
        cursor.execute(INSERT_RED_LINE, ["redline.added_by_sql", True])
    assert Capability.objects.get(key="redline.added_by_sql").is_red_line is True


def test_raw_insert__profile_version_holding_red_line__refused_by_trigger(before, make_tenant):
    profile = Profile.objects.get(tenant=make_tenant("acme"), name="default")
    parent = ProfileVersion.objects.get(profile=profile, number=1)
    message = trigger_refusal(
        """
        INSERT INTO toggles_profileversion (profile_id, number, "values", parent_id, kind,
            source, reason, digest, created_at)
        VALUES (%s, 2, %s::jsonb, %s, 'change_request', '', 'sql', 'sha256:x', now())
        """,
        [profile.pk, f'{{"{ADJUSTABLE}": false, "{WEAPONS}": true}}', parent.pk],
    )
    assert message == f"red line {WEAPONS} can never be set by a profile version"
    assert list(ProfileVersion.objects.filter(profile=profile).values_list("number")) == [(1,)]


# Admin -----------------------------------------------------------------------------------


@pytest.fixture
def superuser_client(client, make_user):
    client.force_login(make_user("root", is_staff=True, is_superuser=True))
    return client


def test_admin_change_view__red_line_as_superuser__read_only(before, superuser_client):
    red = Capability.objects.get(key=SURVEILLANCE)
    response = superuser_client.get(reverse("admin:toggles_capability_change", args=[red.pk]))
    assert response.status_code == 200
    assert response.context["has_change_permission"] is False
    assert response.context["has_delete_permission"] is False
    assert b'name="_save"' not in response.content
    assert b'name="fixed_value"' not in response.content


def test_admin_change_post__red_line_as_superuser__forbidden_and_unchanged(
    before, superuser_client
):
    red = Capability.objects.get(key=SURVEILLANCE)
    row = Capability.objects.filter(pk=red.pk).values().get()
    form = {name: "" if value is None else value for name, value in row.items()}
    form.update(fixed_value="true", is_red_line="", title="Allowed", _save="Save")
    response = superuser_client.post(
        reverse("admin:toggles_capability_change", args=[red.pk]), form
    )
    assert response.status_code == 403
    assert catalog_rows() == before


def test_admin_delete__red_line_as_superuser__forbidden_and_kept(before, superuser_client):
    red = Capability.objects.get(key=SURVEILLANCE)
    url = reverse("admin:toggles_capability_delete", args=[red.pk])
    assert superuser_client.get(url).status_code == 403
    assert superuser_client.post(url, {"post": "yes"}).status_code == 403
    assert catalog_rows() == before


def test_admin_bulk_delete_action__as_superuser__not_offered_and_refused(before, superuser_client):
    url = reverse("admin:toggles_capability_changelist")
    listing = superuser_client.get(url)
    assert listing.status_code == 200
    assert b'value="delete_selected"' not in listing.content
    red = Capability.objects.get(key=SURVEILLANCE)
    response = superuser_client.post(
        url, {"action": "delete_selected", "_selected_action": [red.pk], "post": "yes"}
    )
    assert response.status_code == 200
    assert catalog_rows() == before


def test_admin_add__capability_as_superuser__forbidden(before, superuser_client):
    response = superuser_client.post(
        reverse("admin:toggles_capability_add"), {"key": "redline.sneaky", "title": "x"}
    )
    assert response.status_code == 403
    assert catalog_rows() == before
