from django.db import models

from audit.chain import ChainLink


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError("audit events are append-only; they can never be updated")

    def delete(self):
        raise PermissionError("audit events are append-only; they can never be deleted")

    def bulk_update(self, objs, fields, batch_size=None):
        raise PermissionError("audit events are append-only; they can never be updated")

    def bulk_create(self, objs, *args, **kwargs):
        raise PermissionError("audit events are written one by one by audit.services.audit_record")


class AuditEvent(models.Model):
    """One entry of the append-only, hash-chained audit log.

    Actor and tenant are kept as text, not foreign keys, so the record outlives
    users and tenants and can be verified on its own.
    """

    sequence = models.BigIntegerField(unique=True)
    created_at = models.DateTimeField()
    actor = models.CharField(max_length=200, blank=True)
    tenant = models.CharField(max_length=100, blank=True, db_index=True)
    action = models.CharField(max_length=100, db_index=True)
    target = models.CharField(max_length=200, blank=True)
    data = models.JSONField(default=dict)
    prev_hash = models.CharField(max_length=64)
    hash = models.CharField(max_length=64, unique=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        ordering = ["sequence"]

    def __str__(self) -> str:
        return f"#{self.sequence} {self.action} {self.target}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError("audit events are append-only; they can never be updated")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError("audit events are append-only; they can never be deleted")

    def as_link(self) -> ChainLink:
        return ChainLink(
            sequence=self.sequence,
            created_at=self.created_at,
            actor=self.actor,
            tenant=self.tenant,
            action=self.action,
            target=self.target,
            data=self.data,
            prev_hash=self.prev_hash,
        )


class AuditWebhookCursor(models.Model):
    """How far the audit webhook (audit.webhooks) has delivered the chain, per receiver URL."""

    url = models.URLField(max_length=500, unique=True)
    last_sequence = models.BigIntegerField(default=0)
    last_sent_at = models.DateTimeField(null=True, blank=True)
    failures = models.PositiveIntegerField(default=0, help_text="Failed attempts in a row")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return f"audit webhook to {self.url}: through #{self.last_sequence}"
