"""A deployment reports the config version it applied."""

from django.db import transaction
from django.utils import timezone

from audit.services import audit_record
from config.errors import Conflict, NotFound
from tenants.models import Deployment
from toggles.models import Profile


@transaction.atomic
def deployment_config_ack(*, deployment: Deployment, version: int) -> Deployment:
    """Record that the deployment applied `version` of its profile.

    Versions only increase: acknowledging an older version than the last one is refused, the
    same one again changes nothing, and a version the profile has not reached is refused.
    """
    # NO KEY UPDATE on the deployment row alone: rows that merely point at the deployment
    # (rollout targets, written while the audit chain's lock is held) can still be inserted.
    locked = (
        Deployment.objects.select_for_update(no_key=True, of=("self",))
        .select_related("tenant")
        .get(pk=deployment.pk)
    )
    profile = Profile.objects.filter(tenant_id=locked.tenant_id, name=locked.profile_name).first()
    if profile is None:
        raise NotFound(
            f"deployment {locked} follows profile '{locked.profile_name}', "
            "which does not exist in its tenant"
        )
    if version > profile.current_version:
        raise Conflict(
            f"{profile} is at version {profile.current_version}; "
            f"version {version} does not exist yet"
        )
    if locked.acked_version is not None and version < locked.acked_version:
        raise Conflict(
            f"{locked} already acknowledged version {locked.acked_version}; versions only increase"
        )
    if version == locked.acked_version:
        return locked
    previous = locked.acked_version
    locked.acked_version = version
    locked.acked_at = timezone.now()
    locked.save(update_fields=["acked_version", "acked_at"])
    audit_record(
        actor=f"deployment:{locked}",
        action="deployment.config_acked",
        tenant=locked.tenant.slug,
        target=f"deployment:{locked}",
        data={"profile": profile.name, "version": version, "previous": previous},
    )
    return locked
