"""Roll a profile back to an earlier version: a change request like any other."""

from approvals.models import ChangeRequest
from approvals.services import change_request_submit
from config.errors import ValidationFailed
from toggles.effective import effective_values
from toggles.models import Profile
from toggles.selectors import catalog_specs, profile_version_get
from toggles.services import NoChange


def rollback_request_submit(
    *, profile: Profile, to_version: int, actor, justification: str
) -> ChangeRequest:
    """Propose restoring the values of an earlier version of the profile.

    The request is built on the current version and sets back every setting that differs
    from `to_version`, so it is classified like any change: a rollback that loosens anything
    needs both parties' quorum, one that only tightens needs one party.
    """
    profile.refresh_from_db(fields=["current_version"])
    current = profile.current_version
    if not isinstance(to_version, int) or not 1 <= to_version < current:
        raise ValidationFailed(
            f"{profile} is at version {current}; roll back to a version from 1 to {current - 1}"
        )
    if not isinstance(justification, str) or not justification.strip():
        raise ValidationFailed("a justification is required: say why the rollback is needed")
    specs = catalog_specs()
    earlier = effective_values(
        specs, profile_version_get(profile=profile, number=to_version).values
    )
    now = effective_values(specs, profile_version_get(profile=profile, number=current).values)
    changes = {key: value for key, value in earlier.items() if now[key] != value}
    if not changes:
        raise NoChange(f"version {current} already has every value of version {to_version}")
    return change_request_submit(
        tenant=profile.tenant,
        profile=profile,
        actor=actor,
        changes=changes,
        justification=f"roll back to version {to_version}: {justification.strip()}",
        base_version=current,
    )
