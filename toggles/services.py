"""Writes to profiles. profile_version_create is the only writer of profile versions."""

import hashlib
from typing import Any

from django.db import transaction

from audit.chain import canonical_json
from audit.services import audit_record
from config.errors import Conflict, RedLineViolation, ValidationFailed
from tenants.models import Tenant
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion, VersionKind, red_line_message
from toggles.rollout import rollout_create
from toggles.serving import version_published
from toggles.values import InvalidValue, validate_value

DEFAULT_PROFILE = "default"


class StaleBaseVersion(Conflict):
    """The profile moved on since the version a change was built on."""

    code = "stale_base_version"


class NoChange(ValidationFailed):
    code = "no_change"


def version_digest(
    *, tenant: str, profile: str, number: int, parent: int | None, values: dict
) -> str:
    document = {
        "tenant": tenant,
        "profile": profile,
        "version": number,
        "parent": parent,
        "values": values,
    }
    return "sha256:" + hashlib.sha256(canonical_json(document)).hexdigest()


def validate_changes(changes: dict[str, Any]) -> dict[str, Any]:
    """Check keys and values against the catalog; return them in canonical form."""
    if not isinstance(changes, dict) or not changes:
        raise ValidationFailed("changes must be a non-empty object of {capability key: new value}")
    capabilities = {c.key: c for c in Capability.objects.filter(key__in=list(changes))}
    clean = {}
    for key in sorted(changes):
        capability = capabilities.get(key)
        if capability is None:
            raise ValidationFailed(
                f"unknown capability '{key}'; GET /api/v1/capabilities lists the catalog"
            )
        if capability.is_red_line:
            raise RedLineViolation(red_line_message(key))
        try:
            clean[key] = validate_value(capability.spec(), changes[key])
        except InvalidValue as error:
            raise ValidationFailed(str(error)) from None
    return clean


@transaction.atomic
def profile_create(*, tenant: Tenant, name: str = DEFAULT_PROFILE, actor=None) -> Profile:
    """A new profile with version 1 at the catalog defaults."""
    if Profile.objects.filter(tenant=tenant, name=name).exists():
        raise Conflict(f"profile '{name}' already exists in {tenant.slug}")
    profile = Profile.objects.create(tenant=tenant, name=name)
    audit_record(
        actor=actor,
        action="profile.created",
        tenant=tenant.slug,
        target=f"profile:{tenant.slug}/{name}",
    )
    _version_write(
        profile=profile,
        values={},
        parent=None,
        actor=actor,
        reason="initial version: catalog defaults",
        kind=VersionKind.INITIAL,
        source="",
    )
    return profile


@transaction.atomic
def profile_version_create(
    *,
    profile: Profile,
    changes: dict[str, Any],
    actor,
    reason: str,
    kind: str,
    source: str = "",
    base_version: int | None = None,
) -> ProfileVersion:
    """Write the next version of a profile: its parent's values with `changes` applied.

    Locks the profile row, so concurrent writers queue; with `base_version`, refuses
    (StaleBaseVersion) when the profile has moved past it.
    """
    if kind not in VersionKind.values or kind == VersionKind.INITIAL:
        raise ValidationFailed(f"a new version cannot be of kind {kind!r}")
    if not reason or not reason.strip():
        raise ValidationFailed("a reason is required for every new version")
    clean = validate_changes(changes)
    locked = Profile.objects.select_for_update().get(pk=profile.pk)
    if base_version is not None and locked.current_version != base_version:
        raise StaleBaseVersion(
            f"{locked} is at version {locked.current_version}, not {base_version}; "
            "rebuild the change on the current version"
        )
    parent = ProfileVersion.objects.get(profile=locked, number=locked.current_version)
    specs = [c.spec() for c in Capability.objects.filter(key__in=list(clean))]
    current = effective_values(specs, parent.values)
    if all(current[key] == value for key, value in clean.items()):
        raise NoChange(f"the change leaves {locked} exactly as version {parent.number}")
    version = _version_write(
        profile=locked,
        values={**parent.values, **clean},
        parent=parent,
        actor=actor,
        reason=reason.strip(),
        kind=kind,
        source=source,
    )
    profile.current_version = locked.current_version
    return version


def _version_write(
    *, profile: Profile, values, parent, actor, reason, kind, source
) -> ProfileVersion:
    number = profile.current_version + 1
    values = dict(sorted(values.items()))
    version = ProfileVersion(
        profile=profile,
        number=number,
        values=values,
        parent=parent,
        kind=kind,
        source=source,
        created_by=actor if getattr(actor, "pk", None) else None,
        reason=reason,
        digest=version_digest(
            tenant=profile.tenant.slug,
            profile=profile.name,
            number=number,
            parent=parent.number if parent else None,
            values=values,
        ),
    )
    version.save()
    Profile.objects.filter(pk=profile.pk).update(current_version=number)
    profile.current_version = number
    # Once committed, its signed config document is built and the serving processes told.
    transaction.on_commit(
        lambda: version_published(profile_id=profile.pk, version=number), robust=True
    )
    rollout_create(version=version)  # its rows commit with the version; it starts after
    changed = {
        key: {"from": parent.values.get(key) if parent else None, "to": value}
        for key, value in values.items()
        if parent is None or parent.values.get(key, _MISSING) != value
    }
    audit_record(
        actor=actor,
        action="profile_version.created",
        tenant=profile.tenant.slug,
        target=f"profile:{profile}",
        data={
            "version": number,
            "kind": kind,
            "source": source,
            "reason": reason,
            "digest": version.digest,
            "changes": changed,
        },
    )
    return version


_MISSING = object()
