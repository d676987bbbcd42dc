"""Capability values: validation, safest value, and tightening vs loosening. Pure functions."""

import math
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ValueType(StrEnum):
    BOOL = "bool"
    INT = "int"
    FLOAT = "float"
    ENUM = "enum"
    STRING = "string"


class RiskTier(StrEnum):
    LOW = "low"
    HIGH = "high"
    CRITICAL = "critical"


RISK_ORDER = {RiskTier.LOW: 0, RiskTier.HIGH: 1, RiskTier.CRITICAL: 2}


class Direction(StrEnum):
    TIGHTENING = "tightening"
    LOOSENING = "loosening"
    UNCHANGED = "unchanged"


class InvalidValue(ValueError):
    """A value that does not fit its capability; the message says what would."""


@dataclass(frozen=True)
class CapabilitySpec:
    """What the rules need to know about one capability."""

    key: str
    value_type: ValueType
    risk_tier: RiskTier
    is_red_line: bool = False
    fixed_value: Any = None
    default: Any = None
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = field(default_factory=tuple)
    max_length: int | None = None
    safe_value: bool | None = None
    safer: str = ""  # "lower" | "higher" for numbers

    @property
    def effective_default(self) -> Any:
        return self.fixed_value if self.is_red_line else self.default


def validate_value(spec: CapabilitySpec, value: Any) -> Any:
    """Return the value in canonical form, or raise InvalidValue saying what fits."""
    key = spec.key
    match spec.value_type:
        case ValueType.BOOL:
            if not isinstance(value, bool):
                raise InvalidValue(f"'{key}' takes true or false, not {value!r}")
            return value
        case ValueType.INT:
            if isinstance(value, bool) or not isinstance(value, int):
                if isinstance(value, float) and value.is_integer():
                    value = int(value)
                else:
                    raise InvalidValue(f"'{key}' takes a whole number, not {value!r}")
            _check_range(spec, value)
            return value
        case ValueType.FLOAT:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InvalidValue(f"'{key}' takes a number, not {value!r}")
            try:
                value = float(value)
            except OverflowError:
                raise InvalidValue(f"'{key}' takes a finite number") from None
            if not math.isfinite(value):
                raise InvalidValue(f"'{key}' takes a finite number, not {value!r}")
            _check_range(spec, value)
            return value
        case ValueType.ENUM:
            if value not in spec.choices or not isinstance(value, str):
                raise InvalidValue(f"'{key}' takes one of {', '.join(spec.choices)}, not {value!r}")
            return value
        case ValueType.STRING:
            if not isinstance(value, str):
                raise InvalidValue(f"'{key}' takes text, not {value!r}")
            if spec.max_length is not None and len(value) > spec.max_length:
                raise InvalidValue(f"'{key}' takes at most {spec.max_length} characters")
            return value
    raise InvalidValue(f"'{key}' has an unknown type {spec.value_type!r}")


def _check_range(spec: CapabilitySpec, value: float) -> None:
    if spec.minimum is not None and value < spec.minimum:
        raise InvalidValue(f"'{spec.key}' must be at least {_number(spec.minimum)}, not {value}")
    if spec.maximum is not None and value > spec.maximum:
        raise InvalidValue(f"'{spec.key}' must be at most {_number(spec.maximum)}, not {value}")


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def safest_value(spec: CapabilitySpec) -> Any:
    """The value at the safe end of the capability's range."""
    if spec.is_red_line:
        return spec.fixed_value
    match spec.value_type:
        case ValueType.BOOL:
            return spec.safe_value
        case ValueType.INT | ValueType.FLOAT:
            bound = spec.minimum if spec.safer == "lower" else spec.maximum
            return int(bound) if spec.value_type == ValueType.INT else float(bound)
        case ValueType.ENUM:
            return spec.choices[0]
    # Text has no safer side: its current value is kept.
    return None


def change_direction(spec: CapabilitySpec, old: Any, new: Any) -> Direction:
    """Classify a change; text, having no safer side, always loosens."""
    if old == new and type(old) is type(new):
        return Direction.UNCHANGED
    match spec.value_type:
        case ValueType.BOOL:
            return Direction.TIGHTENING if new == spec.safe_value else Direction.LOOSENING
        case ValueType.INT | ValueType.FLOAT:
            if new == old:
                return Direction.UNCHANGED
            safer_new = new < old if spec.safer == "lower" else new > old
            return Direction.TIGHTENING if safer_new else Direction.LOOSENING
        case ValueType.ENUM:
            return (
                Direction.TIGHTENING
                if spec.choices.index(new) < spec.choices.index(old)
                else Direction.LOOSENING
            )
    return Direction.LOOSENING


def value_text(value: Any) -> str:
    """A value as people read it, alike in the console and in mail: booleans as on/off,
    no value as a dash (never "none", which is a choice of several capabilities)."""
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None:
        return "—"
    return str(value)
