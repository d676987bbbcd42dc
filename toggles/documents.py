"""The signed config document of a profile version, built once and then only served.

A document is fixed by its profile version and the catalog it was built with, so the catalog's
fingerprint is part of its identity. Whoever builds it gets the same bytes: `issued_at` is the
version's creation time and Ed25519 signatures are deterministic. Next to the native body it
holds the OFREP answers for every flag and for the bulk request, so no request serialises.
"""

import hashlib
import json
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

from audit.chain import canonical_json
from toggles.effective import effective_values, red_line_keys
from toggles.models import ProfileVersion
from toggles.ofrep.evaluation import flag_evaluation
from toggles.selectors import catalog_specs
from toggles.signing import keyring
from toggles.values import CapabilitySpec, ValueType


@dataclass(frozen=True, slots=True)
class Catalog:
    specs: tuple[CapabilitySpec, ...]
    fingerprint: str


def catalog_current() -> Catalog:
    """The capability catalog as it stands, with a short fingerprint of its content."""
    specs = tuple(catalog_specs())
    content = canonical_json([asdict(spec) for spec in specs])
    return Catalog(specs=specs, fingerprint=hashlib.sha256(content).hexdigest()[:16])


@dataclass(frozen=True, slots=True)
class ConfigDocument:
    profile_id: int
    version: int
    catalog: str
    body: bytes
    etag: str
    signature: str
    flags: dict[str, bytes]
    flags_body: bytes
    flags_etag: str


def _json(value: Any) -> bytes:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def _typed(spec: CapabilitySpec, value: Any) -> Any:
    """JSON keeps 1.0 apart from 1 only if the value is a float: OFREP clients check types."""
    if value is None:
        return None
    if spec.value_type == ValueType.FLOAT:
        return float(value)
    if spec.value_type == ValueType.INT:
        return int(value)
    return value


def _timestamp(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


def document_build(
    *,
    catalog: Catalog,
    profile_id: int,
    tenant: str,
    profile: str,
    version: int,
    created_at: datetime,
    values: dict[str, Any],
) -> ConfigDocument:
    """Serialise, digest and sign the effective config of one profile version."""
    specs = {spec.key: spec for spec in catalog.specs}
    effective = {
        key: _typed(specs[key], value)
        for key, value in effective_values(catalog.specs, values).items()
    }
    document = {
        "tenant": tenant,
        "profile": profile,
        "version": version,
        "issued_at": _timestamp(created_at),
        "values": effective,
        "red_lines": red_line_keys(catalog.specs),
    }
    digest = hashlib.sha256(canonical_json(document)).hexdigest()
    document["digest"] = f"sha256:{digest}"
    body = _json(document)
    evaluations = [
        flag_evaluation(
            specs[key],
            value,
            set_by_profile=key in values,
            tenant=tenant,
            profile=profile,
            version=version,
        )
        for key, value in effective.items()
    ]
    flags_body = _json({"flags": evaluations})
    return ConfigDocument(
        profile_id=profile_id,
        version=version,
        catalog=catalog.fingerprint,
        body=body,
        etag=f'"{digest}"',
        signature=keyring().sign(body),
        flags={evaluation["key"]: _json(evaluation) for evaluation in evaluations},
        flags_body=flags_body,
        flags_etag=f'"{hashlib.sha256(flags_body).hexdigest()}"',
    )


def document_load(*, catalog: Catalog, profile_id: int, version: int) -> ConfigDocument | None:
    """Build the document of a stored version (one query), or None when there is no such one."""
    row = (
        ProfileVersion.objects.filter(profile_id=profile_id, number=version)
        .values("values", "created_at", "profile__name", "profile__tenant__slug")
        .first()
    )
    if row is None:
        return None
    return document_build(
        catalog=catalog,
        profile_id=profile_id,
        tenant=row["profile__tenant__slug"],
        profile=row["profile__name"],
        version=version,
        created_at=row["created_at"],
        values=row["values"],
    )
