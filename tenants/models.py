from django.conf import settings
from django.core.validators import RegexValidator
from django.db import models
from guardian.models import GroupObjectPermissionBase, UserObjectPermissionBase

slug_validator = RegexValidator(
    r"^[a-z0-9]+(?:-[a-z0-9]+)*$", "use lowercase letters, digits and single hyphens"
)


class Party(models.TextChoices):
    VENDOR = "vendor", "Vendor"
    CUSTOMER = "customer", "Customer"


class Role(models.TextChoices):
    ADMIN = "admin", "Admin"
    REVIEWER = "reviewer", "Reviewer"
    VIEWER = "viewer", "Viewer"
    AUDITOR = "auditor", "Auditor"


class Tenant(models.Model):
    """A customer of the vendor; every decision about it takes both parties."""

    slug = models.SlugField(max_length=100, unique=True, validators=[slug_validator])
    name = models.CharField(max_length=200)
    created_at = models.DateTimeField(auto_now_add=True)
    offboarded_at = models.DateTimeField(
        null=True, blank=True, help_text="Set once by offboarding; the tenant is read-only after"
    )

    class Meta:
        ordering = ["slug"]
        permissions = [
            ("propose_change", "Propose changes to the tenant's safety settings"),
            ("review_change", "Approve or reject the tenant's change requests"),
            ("manage_deployments", "Manage the tenant's deployments and their tokens"),
            ("view_audit", "Read the tenant's audit log"),
        ]

    def __str__(self) -> str:
        return self.slug


class Membership(models.Model):
    """A person's place in a tenant: one party and one role.

    The unique (user, tenant) pair is what gives a user exactly one party per tenant.
    """

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    tenant = models.ForeignKey(Tenant, on_delete=models.CASCADE, related_name="memberships")
    party = models.CharField(max_length=16, choices=Party.choices)
    role = models.CharField(max_length=16, choices=Role.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["user", "tenant"], name="one_membership_per_tenant"),
            models.CheckConstraint(
                condition=models.Q(party__in=Party.values), name="membership_party_valid"
            ),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="membership_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user} in {self.tenant} ({self.party} {self.role})"


class TenantUserObjectPermission(UserObjectPermissionBase):
    """Direct foreign-key object permissions: they die with their tenant."""

    content_object = models.ForeignKey(Tenant, on_delete=models.CASCADE)


class TenantGroupObjectPermission(GroupObjectPermissionBase):
    content_object = models.ForeignKey(Tenant, on_delete=models.CASCADE)


class Environment(models.TextChoices):
    UNCLASSIFIED = "unclassified", "Unclassified"
    CLASSIFIED = "classified", "Classified"


class Deployment(models.Model):
    """A model deployment of a tenant; it follows one of the tenant's profiles by name."""

    tenant = models.ForeignKey(Tenant, on_delete=models.PROTECT, related_name="deployments")
    slug = models.SlugField(max_length=100, validators=[slug_validator])
    name = models.CharField(max_length=200, blank=True)
    environment = models.CharField(
        max_length=32, choices=Environment.choices, default=Environment.UNCLASSIFIED
    )
    profile_name = models.SlugField(max_length=100, default="default")
    webhook_url = models.URLField(blank=True)
    is_canary = models.BooleanField(default=False)
    acked_version = models.PositiveIntegerField(
        null=True, blank=True, help_text="The profile version the deployment reports it applied"
    )
    acked_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["tenant", "slug"]
        constraints = [
            models.UniqueConstraint(fields=["tenant", "slug"], name="deployment_slug_per_tenant"),
        ]

    def __str__(self) -> str:
        return f"{self.tenant.slug}/{self.slug}"


class DeploymentToken(models.Model):
    """A bearer token of a deployment, stored only as its SHA-256; several allow rotation."""

    deployment = models.ForeignKey(Deployment, on_delete=models.CASCADE, related_name="tokens")
    token_hash = models.CharField(max_length=64, unique=True)
    prefix = models.CharField(max_length=16, help_text="First characters, to recognise a token")
    created_at = models.DateTimeField(auto_now_add=True)
    created_by = models.CharField(max_length=200, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.prefix}… ({self.deployment})"

    @property
    def is_active(self) -> bool:
        return self.revoked_at is None
