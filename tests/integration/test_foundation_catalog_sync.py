"""sync_catalog: adds capabilities and edits adjustable texts; never touches a red line.

Each test writes a variant of the shipped catalog file to a temporary folder and runs
the management command on it, as an operator would.
"""

import copy
import json
import tomllib
from io import StringIO

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command
from django.db import IntegrityError, connection, transaction

from audit.models import AuditEvent
from toggles.models import Capability

SURVEILLANCE = "redline.mass_domestic_surveillance"
WEAPONS = "redline.fully_autonomous_weapons"
PII = "intel.domestic_pii_redaction"
ANALYSIS = "intel.foreign_analysis"
RETENTION = "logging.retention_days"


def toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(item) for item in value) + "]"
    raise TypeError(value)


def write_catalog(path, entries) -> str:
    lines = []
    for entry in entries:
        lines.append("[[capability]]")
        lines += [f"{name} = {toml_value(value)}" for name, value in entry.items()]
        lines.append("")
    path.write_text("\n".join(lines))
    return str(path)


def sync(path) -> str:
    out = StringIO()
    call_command("sync_catalog", path, stdout=out)
    return out.getvalue()


def catalog_rows() -> list[dict]:
    return list(Capability.objects.order_by("key").values())


@pytest.fixture
def shipped():
    with open(settings.REDLINE_CATALOG_PATH, "rb") as handle:
        return tomllib.load(handle)["capability"]


@pytest.fixture
def entries(catalog, shipped):
    """An editable copy of the shipped catalog; the database holds the shipped one."""
    return copy.deepcopy(shipped)


def entry(entries, key) -> dict:
    return next(item for item in entries if item["key"] == key)


def new_red_line(key="redline.covert_influence_operations") -> dict:
    return {
        "key": key,
        "title": "Covert influence operations against the customer's own public",
        "description": "Bars the model from producing covert persuasion aimed at citizens.",
        "category": "Red lines",
        "type": "bool",
        "risk_tier": "critical",
        "red_line": True,
        "value": False,
    }


def test_sync_catalog__shipped_file__every_capability_unchanged(entries, tmp_path):
    events = AuditEvent.objects.count()
    output = sync(write_catalog(tmp_path / "catalog.toml", entries))
    assert output == f"catalog synced: 0 added, 0 updated, {len(entries)} unchanged\n"
    assert AuditEvent.objects.count() == events


def test_catalog__shipped__about_thirty_capabilities_with_the_two_red_lines(shipped, catalog):
    assert 25 <= len(shipped) <= 40
    assert sorted(Capability.objects.filter(is_red_line=True).values_list("key", flat=True)) == [
        WEAPONS,
        SURVEILLANCE,
    ]
    assert catalog.added == [item["key"] for item in shipped]


def red_value_flipped(entries):
    entry(entries, SURVEILLANCE)["value"] = True


def red_title_changed(entries):
    entry(entries, SURVEILLANCE)["title"] = "Mass surveillance (where lawful)"


def red_description_changed(entries):
    entry(entries, WEAPONS)["description"] += " Unless the customer insists."


def red_tier_lowered(entries):
    entry(entries, WEAPONS)["risk_tier"] = "low"


def red_removed(entries):
    entries.remove(entry(entries, WEAPONS))


def red_made_adjustable(entries):
    red = entry(entries, SURVEILLANCE)
    del red["red_line"], red["value"]
    red.update(default=False, safe=False)


def red_line_flag_false(entries):
    entry(entries, SURVEILLANCE)["red_line"] = False


def red_type_changed(entries):
    entry(entries, WEAPONS)["type"] = "int"


def adjustable_promoted(entries):
    adjustable = entry(entries, PII)
    del adjustable["default"], adjustable["safe"]
    adjustable.update(red_line=True, value=True)


def adjustable_type_changed(entries):
    adjustable = entry(entries, PII)
    del adjustable["safe"]
    adjustable.update(type="int", default=1, min=0, max=1, safer="higher")


def adjustable_removed(entries):
    entries.remove(entry(entries, PII))


def adjustable_default_loosened(entries):
    entry(entries, ANALYSIS)["default"] = "full"


def adjustable_safe_side_flipped(entries):
    entry(entries, PII)["safe"] = False


def adjustable_choices_reordered(entries):
    choices = entry(entries, ANALYSIS)["choices"]
    choices.reverse()


def adjustable_bounds_widened(entries):
    entry(entries, RETENTION)["min"] = 0


def adjustable_tier_lowered(entries):
    entry(entries, ANALYSIS)["risk_tier"] = "low"


def new_capability_and_red_line_change(entries):
    entries.append(new_red_line())
    entry(entries, SURVEILLANCE)["value"] = True


REFUSALS = [
    (
        red_value_flipped,
        f"red line '{SURVEILLANCE}' can never change (the catalog file alters fixed_value)",
    ),
    (
        red_title_changed,
        f"red line '{SURVEILLANCE}' can never change (the catalog file alters title)",
    ),
    (
        red_description_changed,
        f"red line '{WEAPONS}' can never change (the catalog file alters description)",
    ),
    (
        red_tier_lowered,
        f"red line '{WEAPONS}' can never change (the catalog file alters risk_tier)",
    ),
    (
        red_removed,
        f"red line '{WEAPONS}' is missing from the catalog file; capabilities are never removed",
    ),
    (
        red_made_adjustable,
        f"red line '{SURVEILLANCE}' can never change (the catalog file alters default, "
        "fixed_value, is_red_line, safe_value)",
    ),
    (red_line_flag_false, f"capability '{SURVEILLANCE}': unexpected field(s) red_line, value"),
    (
        red_type_changed,
        f"capability '{WEAPONS}': a red line is a bool capability with a fixed true/false 'value'",
    ),
    (
        adjustable_promoted,
        f"'{PII}' is adjustable and cannot become a red line; add a red line under a new key",
    ),
    (
        adjustable_type_changed,
        f"'{PII}' cannot change type from bool to int; add a capability under a new key",
    ),
    (
        adjustable_removed,
        f"capability '{PII}' is missing from the catalog file; capabilities are never removed",
    ),
    (
        adjustable_default_loosened,
        f"'{ANALYSIS}' may change only its title, description and category (the catalog file "
        "alters default); tenants change values through change requests",
    ),
    (
        adjustable_safe_side_flipped,
        f"'{PII}' may change only its title, description and category (the catalog file "
        "alters safe_value); tenants change values through change requests",
    ),
    (
        adjustable_choices_reordered,
        f"'{ANALYSIS}' may change only its title, description and category (the catalog file "
        "alters choices); tenants change values through change requests",
    ),
    (
        adjustable_bounds_widened,
        f"'{RETENTION}' may change only its title, description and category (the catalog file "
        "alters minimum); tenants change values through change requests",
    ),
    (
        adjustable_tier_lowered,
        f"'{ANALYSIS}' may change only its title, description and category (the catalog file "
        "alters risk_tier); tenants change values through change requests",
    ),
    (
        new_capability_and_red_line_change,
        f"red line '{SURVEILLANCE}' can never change (the catalog file alters fixed_value)",
    ),
]


@pytest.mark.parametrize(("edit", "message"), REFUSALS, ids=[edit.__name__ for edit, _ in REFUSALS])
def test_sync_catalog__forbidden_edit__refused_with_one_line_naming_it_and_nothing_changed(
    entries, tmp_path, edit, message
):
    before, events = catalog_rows(), AuditEvent.objects.count()
    edit(entries)
    path = write_catalog(tmp_path / "catalog.toml", entries)
    with pytest.raises(CommandError) as error:
        sync(path)
    assert str(error.value) == message
    assert "\n" not in str(error.value)
    assert catalog_rows() == before
    assert AuditEvent.objects.count() == events


def test_sync_catalog__new_red_line__added_audited_and_then_guarded(entries, tmp_path):
    entries.append(new_red_line())
    path = write_catalog(tmp_path / "catalog.toml", entries)
    assert sync(path) == f"catalog synced: 1 added, 0 updated, {len(entries) - 1} unchanged\n"
    added = Capability.objects.get(key="redline.covert_influence_operations")
    assert (added.is_red_line, added.fixed_value) == (True, False)
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.actor, event.target) == ("catalog.synced", "system", "catalog")
    assert event.data == {"added": ["redline.covert_influence_operations"], "updated": []}
    with pytest.raises(IntegrityError), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            "UPDATE toggles_capability SET fixed_value = 'true' WHERE key = %s", [added.key]
        )
    entry(entries, added.key)["value"] = True
    with pytest.raises(CommandError) as error:
        sync(write_catalog(tmp_path / "catalog.toml", entries))
    assert str(error.value) == (
        f"red line '{added.key}' can never change (the catalog file alters fixed_value)"
    )


def test_sync_catalog__adjustable_texts_changed__updated_and_audited(entries, tmp_path):
    adjustable = entry(entries, ANALYSIS)
    adjustable["title"] = "Foreign-intelligence analysis support"
    adjustable["description"] = "  Reworded   description\nover two lines. "
    adjustable["category"] = "Intelligence analysis"
    others = [row for row in catalog_rows() if row["key"] != ANALYSIS]
    output = sync(write_catalog(tmp_path / "catalog.toml", entries))
    assert output == f"catalog synced: 0 added, 1 updated, {len(entries) - 1} unchanged\n"
    stored = Capability.objects.get(key=ANALYSIS)
    assert (stored.title, stored.description, stored.category) == (
        "Foreign-intelligence analysis support",
        "Reworded description over two lines.",
        "Intelligence analysis",
    )
    assert [row for row in catalog_rows() if row["key"] != ANALYSIS] == others
    event = AuditEvent.objects.order_by("-sequence").first()
    assert (event.action, event.data) == ("catalog.synced", {"added": [], "updated": [ANALYSIS]})
    events = AuditEvent.objects.count()
    sync(write_catalog(tmp_path / "catalog.toml", entries))
    assert AuditEvent.objects.count() == events


def test_sync_catalog__new_adjustable__added_with_its_definition(entries, tmp_path):
    entries.append(
        {
            "key": "usage.max_context_documents",
            "title": "Documents per request",
            "description": "Caps how many documents one request may attach.",
            "category": "Usage",
            "type": "int",
            "risk_tier": "low",
            "default": 20,
            "min": 1,
            "max": 500,
            "safer": "lower",
        }
    )
    sync(write_catalog(tmp_path / "catalog.toml", entries))
    added = Capability.objects.get(key="usage.max_context_documents")
    assert (added.is_red_line, added.default, added.minimum, added.maximum, added.safer) == (
        False,
        20,
        1.0,
        500.0,
        "lower",
    )


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("[[capability]\nkey = 1", "is not valid TOML"),
        ("title = 'no capabilities'\n", "has no [[capability]] entries"),
    ],
)
def test_sync_catalog__unreadable_file__refused_naming_the_file(
    catalog, tmp_path, content, message
):
    before = catalog_rows()
    path = tmp_path / "broken.toml"
    path.write_text(content)
    with pytest.raises(CommandError) as error:
        sync(str(path))
    assert str(error.value).startswith(f"catalog file {path} ")
    assert message in str(error.value)
    assert catalog_rows() == before


def test_sync_catalog__missing_file__refused_naming_it(catalog, tmp_path):
    with pytest.raises(CommandError) as error:
        sync(str(tmp_path / "nowhere.toml"))
    assert str(error.value) == f"catalog file {tmp_path / 'nowhere.toml'} not found"


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (
            lambda entries: entries.append(copy.deepcopy(entry(entries, PII))),
            f"capability '{PII}' appears twice in the catalog",
        ),
        (
            lambda entries: entry(entries, PII).update(default="yes"),
            f"capability '{PII}': '{PII}' takes true or false, not 'yes'",
        ),
        (
            lambda entries: entry(entries, RETENTION).update(default=10**6),
            f"capability '{RETENTION}': '{RETENTION}' must be at most 3650, not 1000000",
        ),
        (
            lambda entries: entries.append({**new_red_line(), "key": "Bad Key"}),
            "capability 'Bad Key': key: use lowercase letters, digits, '_' and '-', dotted",
        ),
        (
            lambda entries: entries.append({**new_red_line(), "value": "off"}),
            "capability 'redline.covert_influence_operations': a red line is a bool capability "
            "with a fixed true/false 'value'",
        ),
    ],
    ids=["duplicate", "bad-default-type", "default-out-of-range", "bad-key", "red-line-not-bool"],
)
def test_sync_catalog__invalid_entry__refused_naming_it(entries, tmp_path, edit, message):
    before = catalog_rows()
    edit(entries)
    with pytest.raises(CommandError) as error:
        sync(write_catalog(tmp_path / "catalog.toml", entries))
    assert str(error.value) == message
    assert catalog_rows() == before
