"""Effective config: catalog defaults, overlaid by a version's values, red lines forced."""

from collections.abc import Iterable, Mapping
from typing import Any

from toggles.values import CapabilitySpec


def effective_values(specs: Iterable[CapabilitySpec], values: Mapping[str, Any]) -> dict[str, Any]:
    """Every capability's value; a red line is its fixed value whatever `values` holds."""
    result = {}
    for spec in specs:
        if spec.is_red_line:
            result[spec.key] = spec.fixed_value
        else:
            result[spec.key] = values.get(spec.key, spec.default)
    return dict(sorted(result.items()))


def red_line_keys(specs: Iterable[CapabilitySpec]) -> list[str]:
    return sorted(spec.key for spec in specs if spec.is_red_line)
