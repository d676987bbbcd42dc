"""GET /api/v1/audit/events: the audit log for people whose role may read it.

Who reads which tenant's events comes from their memberships' roles (view_audit), never
from has_perm. Pages follow the sequence: `after` is the last sequence already seen.
With `Accept: application/x-ndjson` the events stream as JSON Lines from a server-side
cursor, so an export of any size runs in constant memory.
"""

import json

from django.http import StreamingHttpResponse
from django.utils.http import urlencode
from drf_spectacular.utils import OpenApiResponse, extend_schema, inline_serializer
from rest_framework import exceptions, renderers, serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from audit.selectors import (
    EventFilter,
    audit_events,
    event_json_blocks,
    event_record,
    event_rows,
)
from tenants.models import Membership
from tenants.permissions import ROLE_PERMISSIONS, VIEW_AUDIT
from tenants.selectors import tenants_visible_to

NDJSON = "application/x-ndjson"
PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000


class NdjsonRenderer(renderers.BaseRenderer):
    """Lets content negotiation accept JSON Lines; errors go out as one JSON line."""

    media_type = NDJSON
    format = "ndjson"
    charset = None

    def render(self, data, accepted_media_type=None, renderer_context=None):
        return json.dumps(data).encode() + b"\n"


def audit_readable_tenants(user) -> list[str]:
    """Slugs of the tenants whose audit log the user's role lets them read."""
    roles = [role for role, perms in ROLE_PERMISSIONS.items() if VIEW_AUDIT in perms]
    if not user.is_authenticated or not user.is_active:
        return []
    return list(
        Membership.objects.filter(user=user, role__in=roles)
        .order_by("tenant__slug")
        .values_list("tenant__slug", flat=True)
    )


class AuditEventsApi(APIView):
    renderer_classes = [renderers.JSONRenderer, NdjsonRenderer]

    class InputSerializer(serializers.Serializer):
        tenant = serializers.SlugField(required=False, help_text="one tenant; default: all yours")
        action = serializers.CharField(required=False, help_text="exact, e.g. decision.approve")
        actor = serializers.CharField(required=False, help_text="exact actor, e.g. user:alice")
        since = serializers.DateTimeField(required=False, help_text="created at or after")
        until = serializers.DateTimeField(required=False, help_text="created before")
        after = serializers.IntegerField(
            required=False, min_value=0, default=0, help_text="the last sequence already seen"
        )
        limit = serializers.IntegerField(
            required=False,
            min_value=1,
            max_value=MAX_PAGE_SIZE,
            help_text=f"events per page (JSON: default {PAGE_SIZE}); JSON Lines: all by default",
        )

    class EventOutput(serializers.Serializer):
        sequence = serializers.IntegerField()
        created_at = serializers.CharField()
        actor = serializers.CharField()
        tenant = serializers.CharField()
        action = serializers.CharField()
        target = serializers.CharField()
        data = serializers.JSONField()
        prev_hash = serializers.CharField()
        hash = serializers.CharField()

    @extend_schema(
        operation_id="audit_events",
        parameters=[InputSerializer],
        responses={
            200: OpenApiResponse(
                inline_serializer(
                    "AuditEventPage",
                    {
                        "events": EventOutput(many=True),
                        "next": serializers.CharField(allow_null=True),
                    },
                ),
                description=f"A page of events; with Accept: {NDJSON}, every event as JSON Lines",
            )
        },
    )
    def get(self, request):
        params = self.InputSerializer(data=request.query_params)
        params.is_valid(raise_exception=True)
        query = params.validated_data
        criteria = EventFilter(
            tenants=self._tenants(request, query.get("tenant")),
            action=query.get("action", ""),
            actor=query.get("actor", ""),
            since=query.get("since"),
            until=query.get("until"),
            after=query["after"],
        )
        events = audit_events(criteria)
        if request.accepted_renderer.format == NdjsonRenderer.format:
            blocks = event_json_blocks(events, limit=query.get("limit"))
            return StreamingHttpResponse(blocks, content_type=NDJSON)
        limit = query.get("limit", PAGE_SIZE)
        rows = list(event_rows(events, limit=limit + 1))
        page = [event_record(row) for row in rows[:limit]]
        following = None
        if len(rows) > limit:
            cursor = {**request.query_params.dict(), "after": page[-1]["sequence"]}
            following = request.build_absolute_uri(f"{request.path}?{urlencode(cursor)}")
        return Response({"events": page, "next": following})

    def _tenants(self, request, slug: str | None) -> tuple[str, ...]:
        readable = audit_readable_tenants(request.user)
        if slug is None:
            if not readable:
                raise exceptions.PermissionDenied("your roles let you read no tenant's audit log")
            return tuple(readable)
        if slug in readable:
            return (slug,)
        if tenants_visible_to(request.user).filter(slug=slug).exists():
            raise exceptions.PermissionDenied(f"your role may not read the audit log of {slug}")
        raise exceptions.NotFound(f"no tenant '{slug}'")
