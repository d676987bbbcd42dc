from django.contrib import admin

from config.admin import InspectionAdmin
from tenants.models import Deployment, DeploymentToken, Membership, Tenant


@admin.register(Tenant)
class TenantAdmin(InspectionAdmin):
    list_display = ["slug", "name", "created_at"]
    search_fields = ["slug", "name"]


@admin.register(Membership)
class MembershipAdmin(InspectionAdmin):
    list_display = ["user", "tenant", "party", "role"]
    list_filter = ["tenant", "party", "role"]


@admin.register(Deployment)
class DeploymentAdmin(InspectionAdmin):
    list_display = ["slug", "tenant", "environment", "profile_name", "is_canary"]
    list_filter = ["tenant", "environment"]


@admin.register(DeploymentToken)
class DeploymentTokenAdmin(InspectionAdmin):
    list_display = ["prefix", "deployment", "created_at", "revoked_at"]
    exclude = ["token_hash"]
