from django.contrib import admin

from config.admin import InspectionAdmin
from toggles.models import Capability, Profile, ProfileVersion, Rollout, RolloutTarget


@admin.register(Capability)
class CapabilityAdmin(InspectionAdmin):
    list_display = ["key", "title", "category", "value_type", "risk_tier", "is_red_line"]
    list_filter = ["is_red_line", "category", "risk_tier"]
    search_fields = ["key", "title"]


@admin.register(Profile)
class ProfileAdmin(InspectionAdmin):
    list_display = ["tenant", "name", "current_version"]


@admin.register(ProfileVersion)
class ProfileVersionAdmin(InspectionAdmin):
    list_display = ["profile", "number", "kind", "created_by", "created_at", "digest"]
    list_filter = ["kind", "profile__tenant"]


@admin.register(Rollout)
class RolloutAdmin(InspectionAdmin):
    list_display = ["profile", "version", "status", "wave", "created_at", "finished_at"]
    list_filter = ["status", "profile__tenant"]


@admin.register(RolloutTarget)
class RolloutTargetAdmin(InspectionAdmin):
    list_display = ["deployment", "rollout", "wave", "mode", "status", "attempts", "updated_at"]
    list_filter = ["status", "mode", "wave"]
    search_fields = ["deployment__slug", "last_error"]
