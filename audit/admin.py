from django.contrib import admin

from audit.models import AuditEvent
from config.admin import InspectionAdmin


@admin.register(AuditEvent)
class AuditEventAdmin(InspectionAdmin):
    list_display = ["sequence", "created_at", "actor", "tenant", "action", "target"]
    list_filter = ["action", "tenant"]
    search_fields = ["actor", "target", "action"]
