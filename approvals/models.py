from datetime import timedelta

from django.conf import settings
from django.db import models

from toggles.values import RiskTier


class QuorumPolicy(models.Model):
    """How many reviewers of each party a tenant's loosening changes need.

    Changed only by an applied policy change request; `version` is what such a request
    is built on. Thresholds below the floor in settings never take effect.
    """

    tenant = models.OneToOneField(
        "tenants.Tenant", on_delete=models.PROTECT, related_name="quorum_policy"
    )
    version = models.PositiveIntegerField(default=1)
    vendor_low = models.PositiveSmallIntegerField(default=1)
    customer_low = models.PositiveSmallIntegerField(default=1)
    vendor_high = models.PositiveSmallIntegerField(default=2)
    customer_high = models.PositiveSmallIntegerField(default=2)
    vendor_critical = models.PositiveSmallIntegerField(default=2)
    customer_critical = models.PositiveSmallIntegerField(default=2)
    vetoes_required = models.PositiveSmallIntegerField(default=1)
    pending_lifetime = models.DurationField(default=timedelta(hours=72))
    apply_window = models.DurationField(default=timedelta(hours=24))
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name_plural = "quorum policies"
        constraints = [
            models.CheckConstraint(
                condition=models.Q(vetoes_required__gte=1), name="policy_veto_at_least_one"
            ),
        ]

    def __str__(self) -> str:
        return f"quorum policy of {self.tenant}"


class RequestKind(models.TextChoices):
    PROFILE = "profile", "Profile change"
    POLICY = "policy", "Quorum policy change"


class RequestStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    APPROVED = "approved", "Approved"
    APPLIED = "applied", "Applied"
    REJECTED = "rejected", "Rejected"
    WITHDRAWN = "withdrawn", "Withdrawn"
    EXPIRED = "expired", "Expired"
    STALE = "stale", "Stale"


class ChangeRequest(models.Model):
    """A proposed change. Its content is frozen at submission; only its status moves."""

    tenant = models.ForeignKey("tenants.Tenant", on_delete=models.PROTECT, related_name="+")
    kind = models.CharField(max_length=10, choices=RequestKind.choices)
    profile = models.ForeignKey(
        "toggles.Profile", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    base_version = models.PositiveIntegerField()
    changes = models.JSONField(help_text="{key: new value}")
    previous = models.JSONField(help_text="{key: value at the base version}")
    directions = models.JSONField(help_text="{key: tightening | loosening}")
    risk_tier = models.CharField(max_length=10, choices=[(t.value, t.value) for t in RiskTier])
    is_loosening = models.BooleanField()
    required_vendor = models.PositiveSmallIntegerField()
    required_customer = models.PositiveSmallIntegerField()
    required_any = models.PositiveSmallIntegerField(
        help_text="Approvals from either party (a tightening needs one)"
    )
    vetoes_required = models.PositiveSmallIntegerField()
    justification = models.TextField()
    requester = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    time_box = models.DurationField(null=True, blank=True)
    digest = models.CharField(max_length=71)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()

    status = models.CharField(
        max_length=10, choices=RequestStatus.choices, default=RequestStatus.PENDING, db_index=True
    )
    status_reason = models.TextField(blank=True)
    status_changed_at = models.DateTimeField()
    approved_at = models.DateTimeField(null=True, blank=True)
    applied_at = models.DateTimeField(null=True, blank=True)
    applied_version = models.PositiveIntegerField(null=True, blank=True)
    revert_at = models.DateTimeField(null=True, blank=True, db_index=True)
    reverted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["tenant", "status"])]

    def __str__(self) -> str:
        return f"change request #{self.pk} ({self.status})"


class Verdict(models.TextChoices):
    APPROVE = "approve", "Approve"
    REJECT = "reject", "Reject"


class Channel(models.TextChoices):
    CONSOLE = "console", "Console"
    EMAIL = "email", "Email"
    API = "api", "API"


class Decision(models.Model):
    """One reviewer's approval or rejection of one request, as they saw it (digest)."""

    change_request = models.ForeignKey(
        ChangeRequest, on_delete=models.PROTECT, related_name="decisions"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    party = models.CharField(max_length=16)
    verdict = models.CharField(max_length=10, choices=Verdict.choices)
    comment = models.TextField(blank=True)
    channel = models.CharField(max_length=10, choices=Channel.choices)
    request_digest = models.CharField(max_length=71)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["created_at", "pk"]
        constraints = [
            models.UniqueConstraint(
                fields=["change_request", "reviewer"], name="one_decision_per_reviewer"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.reviewer} {self.verdict}s #{self.change_request_id}"


class ReviewLink(models.Model):
    """A personal link in a review email: one reviewer, one request, used at most once.

    The token is `<selector>.<signature>`. Only a hash of the selector is stored; the
    signature is an HMAC (SECRET_KEY) over this row's binding, so neither a copy of the
    database nor a write to it yields a working link. The membership it was issued under
    is kept, so a changed membership or role kills the link.
    """

    change_request = models.ForeignKey(
        ChangeRequest, on_delete=models.PROTECT, related_name="review_links"
    )
    reviewer = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+"
    )
    membership_id = models.BigIntegerField()
    party = models.CharField(max_length=16)
    role = models.CharField(max_length=16)
    digest = models.CharField(max_length=71, help_text="The request digest the link is bound to")
    selector_hash = models.CharField(max_length=64, unique=True)
    created_at = models.DateTimeField()
    expires_at = models.DateTimeField()
    used_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["change_request", "reviewer"], name="one_review_link_per_reviewer"
            ),
        ]

    def __str__(self) -> str:
        return f"review link of {self.reviewer} for #{self.change_request_id}"
