"""Turning console form fields into capability values, one widget per capability type."""

from typing import Any

from toggles.models import Capability
from toggles.values import ValueType

FIELD_PREFIX = "cap:"


class FormValueError(ValueError):
    pass


def field_name(capability: Capability) -> str:
    return FIELD_PREFIX + capability.key


def parse_field(capability: Capability, raw: str) -> Any:
    """The typed value of one widget; validation against constraints happens in the service."""
    raw = raw.strip()
    match capability.value_type:
        case ValueType.BOOL:
            if raw not in ("true", "false"):
                raise FormValueError(f"'{capability.key}' takes on or off")
            return raw == "true"
        case ValueType.INT:
            try:
                return int(raw)
            except ValueError:
                raise FormValueError(f"'{capability.key}' takes a whole number") from None
        case ValueType.FLOAT:
            try:
                return float(raw)
            except ValueError:
                raise FormValueError(f"'{capability.key}' takes a number") from None
    return raw


def changed_values(data, capabilities, current: dict[str, Any]) -> dict[str, Any]:
    """The capabilities whose submitted widget differs from the current value.

    Red lines have no widget; a forged field for one is passed on, so the service
    refuses it with its own message.
    """
    changes = {}
    for capability in capabilities:
        name = field_name(capability)
        if name not in data:
            continue
        if capability.is_red_line:
            changes[capability.key] = data[name]
            continue
        value = parse_field(capability, data[name])
        if value != current[capability.key]:
            changes[capability.key] = value
    return changes
