from django.contrib import admin


class InspectionAdmin(admin.ModelAdmin):
    """Read-only admin: records are changed through services, which audit every change."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False
