"""Keep guardian object permissions in step with memberships.

Derived state, like a cache: the signals also fire for cascades (a deleted user or
tenant) that never pass through a service.
"""

from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver

from tenants.models import Membership
from tenants.services import membership_sync_permissions


@receiver(post_save, sender=Membership)
def membership_saved(sender, instance: Membership, **kwargs):
    membership_sync_permissions(user=instance.user, tenant=instance.tenant)


@receiver(post_delete, sender=Membership)
def membership_deleted(sender, instance: Membership, **kwargs):
    membership_sync_permissions(user=instance.user, tenant=instance.tenant)
