"""Tell the serving processes when what they serve may have changed (cache invalidation only).

New versions announce themselves (toggles.services); these cover the rest: a token issued or
revoked, a deployment moved to another profile or removed, the capability catalog synced.
"""

from django.db import transaction
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenants.models import Deployment, DeploymentToken
from toggles.models import Capability
from toggles.serving import config_changed

ACK_FIELDS = frozenset({"acked_version", "acked_at"})


def _announce() -> None:
    transaction.on_commit(config_changed, robust=True)


@receiver(post_save, sender=DeploymentToken)
@receiver(post_delete, sender=DeploymentToken)
@receiver(post_delete, sender=Deployment)
@receiver(post_save, sender=Capability)
@receiver(post_delete, sender=Capability)
def served_row_changed(sender, **kwargs):
    _announce()


@receiver(post_save, sender=Deployment)
def deployment_saved(sender, update_fields=None, **kwargs):
    if update_fields is None or not set(update_fields) <= ACK_FIELDS:
        _announce()
