"""Reads of the catalog, profiles and effective config."""

from config.errors import NotFound
from tenants.models import Tenant
from toggles.effective import effective_values, red_line_keys
from toggles.models import Capability, Profile, ProfileVersion
from toggles.values import CapabilitySpec


def catalog_specs() -> list[CapabilitySpec]:
    return [capability.spec() for capability in Capability.objects.all()]


def profile_get(*, tenant: Tenant, name: str) -> Profile:
    profile = Profile.objects.select_related("tenant").filter(tenant=tenant, name=name).first()
    if profile is None:
        raise NotFound(f"no profile '{name}' in {tenant.slug}")
    return profile


def profile_version_get(*, profile: Profile, number: int | None = None) -> ProfileVersion:
    """A version of the profile; its current one when no number is given."""
    number = profile.current_version if number is None else number
    version = ProfileVersion.objects.filter(profile=profile, number=number).first()
    if version is None:
        raise NotFound(f"{profile} has no version {number}")
    return version


def effective_config(*, profile: Profile, number: int | None = None) -> dict:
    """The values a deployment following the profile runs with, red lines forced."""
    version = profile_version_get(profile=profile, number=number)
    specs = catalog_specs()
    return {
        "tenant": profile.tenant.slug,
        "profile": profile.name,
        "version": version.number,
        "values": effective_values(specs, version.values),
        "red_lines": red_line_keys(specs),
    }
