"""OFREP evaluation results of one capability. Pure: the config API serves them prebuilt.

There is no per-request targeting: a deployment's token selects its tenant's profile, so the
result of a flag is fixed by the profile version. The reason says where the value comes from:
STATIC for a red line (fixed forever), TARGETING_MATCH for a value the profile version sets,
DEFAULT for a catalog default the profile leaves alone.
"""

from typing import Any

from toggles.values import CapabilitySpec

STATIC = "STATIC"
TARGETING_MATCH = "TARGETING_MATCH"
DEFAULT = "DEFAULT"

FLAG_NOT_FOUND = "FLAG_NOT_FOUND"
PARSE_ERROR = "PARSE_ERROR"
INVALID_CONTEXT = "INVALID_CONTEXT"
GENERAL = "GENERAL"


def flag_evaluation(
    spec: CapabilitySpec,
    value: Any,
    *,
    set_by_profile: bool,
    tenant: str,
    profile: str,
    version: int,
) -> dict[str, Any]:
    if spec.is_red_line:
        reason, variant = STATIC, "red_line"
    elif set_by_profile:
        reason, variant = TARGETING_MATCH, "profile"
    else:
        reason, variant = DEFAULT, "default"
    return {
        "key": spec.key,
        "value": value,
        "reason": reason,
        "variant": variant,
        "metadata": {
            "redLine": spec.is_red_line,
            "valueType": str(spec.value_type),
            "riskTier": str(spec.risk_tier),
            "tenant": tenant,
            "profile": profile,
            "version": version,
        },
    }


def flag_not_found(key: str, detail: str) -> dict[str, str]:
    return {"key": key, "errorCode": FLAG_NOT_FOUND, "errorDetails": detail}
