"""The capability catalog file and its synchronisation into the database.

Syncing may add capabilities (red lines included) and change the texts of adjustable
ones; it refuses to alter, remove or demote a red line, naming the capability. An
adjustable capability's default, bounds, choices, safer side and risk tier are frozen
too: changing them would change every tenant's effective config, or what counts as
tightening, without either party's approval.
"""

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction

from audit.services import audit_record
from toggles.models import Capability, capability_key_validator
from toggles.values import CapabilitySpec, InvalidValue, RiskTier, ValueType, validate_value

COMMON_FIELDS = {"key", "title", "description", "category", "type", "risk_tier"}
RED_LINE_FIELDS = COMMON_FIELDS | {"red_line", "value"}
ADJUSTABLE_FIELDS = {
    ValueType.BOOL: COMMON_FIELDS | {"default", "safe"},
    ValueType.INT: COMMON_FIELDS | {"default", "min", "max", "safer"},
    ValueType.FLOAT: COMMON_FIELDS | {"default", "min", "max", "safer"},
    ValueType.ENUM: COMMON_FIELDS | {"default", "choices"},
    ValueType.STRING: COMMON_FIELDS | {"default", "max_length"},
}
# Model fields that define a capability; a red line's are frozen forever.
DEFINITION_FIELDS = (
    "title",
    "description",
    "category",
    "value_type",
    "risk_tier",
    "is_red_line",
    "fixed_value",
    "default",
    "minimum",
    "maximum",
    "choices",
    "max_length",
    "safe_value",
    "safer",
)
# What a catalog edit may change on an adjustable capability.
TEXT_FIELDS = ("title", "description", "category")


class CatalogError(Exception):
    """The catalog file is invalid, or applying it would touch a red line."""


@dataclass
class SyncResult:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def catalog_load(path: Path | str) -> list[dict[str, Any]]:
    """Parse and check the catalog file; returns model field values per capability."""
    try:
        with open(path, "rb") as handle:
            document = tomllib.load(handle)
    except FileNotFoundError:
        raise CatalogError(f"catalog file {path} not found") from None
    except tomllib.TOMLDecodeError as error:
        raise CatalogError(f"catalog file {path} is not valid TOML: {error}") from None
    entries = document.get("capability")
    if not isinstance(entries, list) or not entries:
        raise CatalogError(f"catalog file {path} has no [[capability]] entries")
    definitions, seen = [], set()
    for index, entry in enumerate(entries, start=1):
        key = entry.get("key", f"entry #{index}")
        try:
            definition = _definition(entry)
        except (CatalogError, InvalidValue, ValueError, TypeError) as error:
            raise CatalogError(f"capability '{key}': {error}") from None
        if definition["key"] in seen:
            raise CatalogError(f"capability '{key}' appears twice in the catalog")
        seen.add(definition["key"])
        definitions.append(definition)
    return definitions


def _definition(entry: dict[str, Any]) -> dict[str, Any]:
    for required in ("key", "title", "description", "category", "type", "risk_tier"):
        if not isinstance(entry.get(required), str) or not entry[required].strip():
            raise CatalogError(f"'{required}' is required text")
    try:
        capability_key_validator(entry["key"])
    except ValidationError:
        raise CatalogError(f"key: {capability_key_validator.message}") from None
    value_type = ValueType(entry["type"])
    risk_tier = RiskTier(entry["risk_tier"])
    is_red_line = entry.get("red_line", False) is True
    allowed = RED_LINE_FIELDS if is_red_line else ADJUSTABLE_FIELDS[value_type]
    unknown = sorted(set(entry) - allowed)
    if unknown:
        raise CatalogError(f"unexpected field(s) {', '.join(unknown)}")
    missing = sorted(allowed - set(entry) - {"red_line"})
    if missing:
        raise CatalogError(f"missing field(s) {', '.join(missing)}")
    definition = {
        "key": entry["key"],
        "title": entry["title"].strip(),
        "description": " ".join(entry["description"].split()),
        "category": entry["category"],
        "value_type": value_type.value,
        "risk_tier": risk_tier.value,
        "is_red_line": is_red_line,
        "fixed_value": None,
        "default": None,
        "minimum": None,
        "maximum": None,
        "choices": [],
        "max_length": None,
        "safe_value": None,
        "safer": "",
    }
    if not is_red_line:
        definition.update(
            minimum=_number(entry.get("min")),
            maximum=_number(entry.get("max")),
            choices=list(entry.get("choices", [])),
            max_length=entry.get("max_length"),
            safe_value=entry.get("safe"),
            safer=entry.get("safer", ""),
        )
        if value_type in (ValueType.INT, ValueType.FLOAT):
            if definition["safer"] not in ("lower", "higher"):
                raise CatalogError('\'safer\' must be "lower" or "higher"')
            if definition["minimum"] > definition["maximum"]:
                raise CatalogError("'min' is greater than 'max'")
        if value_type == ValueType.BOOL and not isinstance(definition["safe_value"], bool):
            raise CatalogError("'safe' must be true or false")
        if value_type == ValueType.ENUM and (
            len(definition["choices"]) < 2
            or not all(isinstance(choice, str) for choice in definition["choices"])
            or len(set(definition["choices"])) != len(definition["choices"])
        ):
            raise CatalogError("'choices' must list two or more distinct texts, safest first")
        if value_type == ValueType.STRING and not (
            isinstance(definition["max_length"], int) and definition["max_length"] > 0
        ):
            raise CatalogError("'max_length' must be a positive whole number")
    if is_red_line:
        if value_type != ValueType.BOOL or not isinstance(entry["value"], bool):
            raise CatalogError("a red line is a bool capability with a fixed true/false 'value'")
        definition["fixed_value"] = entry["value"]
    else:
        definition["default"] = validate_value(_spec(definition), entry["default"])
    return definition


def _number(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CatalogError(f"{value!r} is not a number")
    return float(value)


def _spec(definition: dict[str, Any]) -> CapabilitySpec:
    return CapabilitySpec(
        key=definition["key"],
        value_type=ValueType(definition["value_type"]),
        risk_tier=RiskTier(definition["risk_tier"]),
        is_red_line=definition["is_red_line"],
        fixed_value=definition["fixed_value"],
        default=definition["default"],
        minimum=definition["minimum"],
        maximum=definition["maximum"],
        choices=tuple(definition["choices"]),
        max_length=definition["max_length"],
        safe_value=definition["safe_value"],
        safer=definition["safer"],
    )


def _stored_definition(capability: Capability) -> dict[str, Any]:
    return {name: getattr(capability, name) for name in DEFINITION_FIELDS}


@transaction.atomic
def catalog_sync(definitions: list[dict[str, Any]], *, actor=None) -> SyncResult:
    """Bring the database in line with the catalog, or change nothing and raise CatalogError."""
    stored = {c.key: c for c in Capability.objects.select_for_update()}
    wanted = {d["key"]: d for d in definitions}
    for key in sorted(set(stored) - set(wanted)):
        kind = "red line" if stored[key].is_red_line else "capability"
        raise CatalogError(
            f"{kind} '{key}' is missing from the catalog file; capabilities are never removed"
        )
    result = SyncResult()
    for key, definition in wanted.items():
        capability = stored.get(key)
        if capability is None:
            Capability(**definition).save()
            result.added.append(key)
            continue
        before = _stored_definition(capability)
        after = {name: definition[name] for name in DEFINITION_FIELDS}
        if before == after:
            result.unchanged.append(key)
            continue
        if capability.is_red_line:
            changed = sorted(name for name in DEFINITION_FIELDS if before[name] != after[name])
            raise CatalogError(
                f"red line '{key}' can never change (the catalog file alters {', '.join(changed)})"
            )
        if definition["is_red_line"]:
            raise CatalogError(
                f"'{key}' is adjustable and cannot become a red line; "
                "add a red line under a new key"
            )
        if before["value_type"] != after["value_type"]:
            raise CatalogError(
                f"'{key}' cannot change type from {before['value_type']} to {after['value_type']}; "
                "add a capability under a new key"
            )
        frozen = sorted(
            name
            for name in DEFINITION_FIELDS
            if name not in TEXT_FIELDS and before[name] != after[name]
        )
        if frozen:
            raise CatalogError(
                f"'{key}' may change only its title, description and category "
                f"(the catalog file alters {', '.join(frozen)}); "
                "tenants change values through change requests"
            )
        for name, value in after.items():
            setattr(capability, name, value)
        capability.save()
        result.updated.append(key)
    if result.added or result.updated:
        audit_record(
            actor=actor,
            action="catalog.synced",
            target="catalog",
            data={"added": result.added, "updated": result.updated},
        )
    return result
