from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models

from config.errors import RedLineViolation
from toggles.values import CapabilitySpec, RiskTier, ValueType

capability_key_validator = RegexValidator(
    r"^[a-z0-9_-]+(\.[a-z0-9_-]+)*$", "use lowercase letters, digits, '_' and '-', dotted"
)


def red_line_message(key: str) -> str:
    return f"'{key}' is a red line: it can never be changed or removed"


class CapabilityQuerySet(models.QuerySet):
    """Bulk paths cannot reach a red line either."""

    def _refuse_red_lines(self, keys=None) -> None:
        rows = (
            self.filter(is_red_line=True)
            if keys is None
            else Capability.objects.filter(is_red_line=True, key__in=keys)
        )
        first = rows.order_by("key").values_list("key", flat=True).first()
        if first is not None:
            raise RedLineViolation(red_line_message(first))

    def update(self, **kwargs):
        self._refuse_red_lines()
        if "is_red_line" in kwargs:
            raise RedLineViolation("red lines are added only through the catalog (sync_catalog)")
        return super().update(**kwargs)

    def delete(self):
        self._refuse_red_lines()
        return super().delete()

    def bulk_update(self, objs, fields, batch_size=None):
        objs = list(objs)
        stored_red = Capability.objects.filter(
            is_red_line=True, pk__in=[obj.pk for obj in objs]
        ).values_list("key", flat=True)
        if first := min(stored_red, default=None):
            raise RedLineViolation(red_line_message(first))
        if "is_red_line" in fields:
            raise RedLineViolation("red lines are added only through the catalog (sync_catalog)")
        return super().bulk_update(objs, fields, batch_size=batch_size)

    def bulk_create(self, objs, *args, update_conflicts=False, **kwargs):
        objs = list(objs)
        if update_conflicts:
            self._refuse_red_lines(keys=[obj.key for obj in objs])
        return super().bulk_create(objs, *args, update_conflicts=update_conflicts, **kwargs)


class Capability(models.Model):
    """A safety setting in the catalog: a red line (fixed forever) or adjustable."""

    key = models.CharField(max_length=100, unique=True, validators=[capability_key_validator])
    title = models.CharField(max_length=200)
    description = models.TextField()
    category = models.CharField(max_length=100)
    value_type = models.CharField(max_length=10, choices=[(t.value, t.value) for t in ValueType])
    risk_tier = models.CharField(max_length=10, choices=[(t.value, t.value) for t in RiskTier])
    is_red_line = models.BooleanField(default=False)
    fixed_value = models.JSONField(null=True, blank=True)
    default = models.JSONField(null=True, blank=True)
    minimum = models.FloatField(null=True, blank=True)
    maximum = models.FloatField(null=True, blank=True)
    choices = models.JSONField(default=list, blank=True, help_text="Enum choices, safest first")
    max_length = models.PositiveIntegerField(null=True, blank=True)
    safe_value = models.BooleanField(null=True, blank=True)
    safer = models.CharField(
        max_length=6, blank=True, choices=[("lower", "lower"), ("higher", "higher")]
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = CapabilityQuerySet.as_manager()

    class Meta:
        ordering = ["category", "key"]
        verbose_name_plural = "capabilities"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(is_red_line=False) | models.Q(fixed_value__isnull=False),
                name="red_line_has_fixed_value",
            ),
        ]

    def __str__(self) -> str:
        return self.key

    def save(self, *args, **kwargs):
        stored = (
            Capability.objects.filter(pk=self.pk).values("key", "is_red_line").first()
            if self.pk
            else None
        )
        if stored and stored["is_red_line"]:
            raise RedLineViolation(red_line_message(stored["key"]))
        if stored and self.is_red_line:
            raise RedLineViolation("red lines are added only through the catalog (sync_catalog)")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        if self.is_red_line or Capability.objects.filter(pk=self.pk, is_red_line=True).exists():
            raise RedLineViolation(red_line_message(self.key))
        return super().delete(*args, **kwargs)

    def spec(self) -> CapabilitySpec:
        return CapabilitySpec(
            key=self.key,
            value_type=ValueType(self.value_type),
            risk_tier=RiskTier(self.risk_tier),
            is_red_line=self.is_red_line,
            fixed_value=self.fixed_value,
            default=self.default,
            minimum=self.minimum,
            maximum=self.maximum,
            choices=tuple(self.choices or ()),
            max_length=self.max_length,
            safe_value=self.safe_value,
            safer=self.safer,
        )


class Profile(models.Model):
    """A named set of safety settings of a tenant; its values live only in its versions."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="profiles")
    name = models.SlugField(max_length=100)
    current_version = models.PositiveIntegerField(default=0)
    released_version = models.PositiveIntegerField(
        default=0,
        help_text="The version served to deployments other than canaries: the current one, "
        "unless a loosening is still in its canary wave",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "name"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "name"], name="profile_name_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.name}"


class VersionKind(models.TextChoices):
    INITIAL = "initial", "Initial version"
    CHANGE_REQUEST = "change_request", "Approved change request"
    TIGHTENING = "tightening", "One-party tightening"
    BRAKE = "brake", "Emergency brake"
    GRANT_REVERT = "grant_revert", "Time-boxed grant reverted"


def append_only_message(what: str) -> str:
    return f"profile versions are append-only; a version can never be {what}"


class ProfileVersionQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise PermissionError(append_only_message("updated"))

    def delete(self):
        raise PermissionError(append_only_message("deleted"))

    def bulk_update(self, objs, fields, batch_size=None):
        raise PermissionError(append_only_message("updated"))

    def bulk_create(self, objs, *args, **kwargs):
        raise PermissionError(
            "profile versions are written only by toggles.services.profile_version_create"
        )


class ProfileVersion(models.Model):
    """An immutable snapshot of a profile's adjustable values."""

    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    values = models.JSONField(default=dict)
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    kind = models.CharField(max_length=20, choices=VersionKind.choices)
    source = models.CharField(max_length=100, blank=True, help_text="What produced it")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    reason = models.TextField()
    digest = models.CharField(max_length=71)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ProfileVersionQuerySet.as_manager()

    class Meta:
        ordering = ["profile", "number"]
        constraints = [
            models.UniqueConstraint(
                fields=["profile", "number"], name="version_number_per_profile"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.profile} v{self.number}"

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise PermissionError(append_only_message("updated"))
        red = (
            Capability.objects.filter(is_red_line=True, key__in=list(self.values))
            .order_by("key")
            .values_list("key", flat=True)
            .first()
        )
        if red is not None:
            raise RedLineViolation(red_line_message(red))
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise PermissionError(append_only_message("deleted"))


class RolloutStatus(models.TextChoices):
    PENDING = "pending", "Waiting to start"
    ACTIVE = "active", "Rolling out"
    PAUSED = "paused", "Paused: a canary failed"
    COMPLETED = "completed", "Delivered to every deployment"
    FAILED = "failed", "Finished; some deployments failed"
    SUPERSEDED = "superseded", "Superseded by a newer version"


class Wave(models.IntegerChoices):
    CANARY = 0, "Canaries"
    GENERAL = 1, "Every other deployment"


class TargetStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    DELIVERING = "delivering", "Delivering"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"
    SUPERSEDED = "superseded", "Superseded by a newer version"


class DeliveryMode(models.TextChoices):
    PUSH = "push", "Webhook push"
    PULL = "pull", "The deployment fetches"


class Rollout(models.Model):
    """The delivery of one profile version to every deployment that follows the profile.

    Created with the version, in its transaction; its targets are planned when it starts.
    Rules live in toggles.rollout.
    """

    profile = models.ForeignKey(Profile, on_delete=models.PROTECT, related_name="rollouts")
    version = models.OneToOneField(ProfileVersion, on_delete=models.PROTECT, related_name="rollout")
    status = models.CharField(
        max_length=10, choices=RolloutStatus.choices, default=RolloutStatus.PENDING, db_index=True
    )
    wave = models.PositiveSmallIntegerField(choices=Wave.choices, default=Wave.CANARY)
    status_reason = models.TextField(blank=True)
    soak_until = models.DateTimeField(null=True, blank=True)
    superseded_by = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"rollout of {self.version}"


class RolloutTarget(models.Model):
    """One deployment's part of a rollout: pending -> delivering -> delivered, or failed."""

    rollout = models.ForeignKey(Rollout, on_delete=models.PROTECT, related_name="targets")
    deployment = models.ForeignKey(
        "tenants.Deployment", on_delete=models.CASCADE, related_name="rollout_targets"
    )
    wave = models.PositiveSmallIntegerField(choices=Wave.choices)
    mode = models.CharField(max_length=4, choices=DeliveryMode.choices)
    status = models.CharField(
        max_length=10, choices=TargetStatus.choices, default=TargetStatus.PENDING
    )
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    acked_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The version the deployment last acknowledged"
    )
    released_at = models.DateTimeField(null=True, blank=True, help_text="When its wave opened")
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    settled_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["rollout", "wave", "deployment__slug"]
        constraints = [
            models.UniqueConstraint(
                fields=["rollout", "deployment"], name="one_target_per_deployment"
            ),
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"]),
            models.Index(fields=["deployment", "status"]),
        ]

    def __str__(self) -> str:
        return f"{self.deployment} in {self.rollout}"


class DeploymentDelivery(models.Model):
    """Per deployment and profile: the newest version pushed (no push goes below it)
    and the newest the deployment reported having, by fetching or acknowledging it."""

    deployment = models.ForeignKey(
        "tenants.Deployment", on_delete=models.CASCADE, related_name="deliveries"
    )
    profile = models.ForeignKey(Profile, on_delete=models.CASCADE, related_name="+")
    sent_version = models.PositiveIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    inflight_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="A push on its way: one at a time per deployment"
    )
    inflight_until = models.DateTimeField(null=True, blank=True)
    reported_version = models.PositiveIntegerField(default=0)
    reported_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["deployment", "profile"], name="one_delivery_mark_per_profile"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.deployment}: sent v{self.sent_version}, has v{self.reported_version}"
