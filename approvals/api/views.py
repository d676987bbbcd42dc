"""The JSON management API for people and their scripts, under /api/v1/.

Every object is looked up within the tenants the caller may see: another tenant's
object is a 404. Writes go through approvals.services; their domain errors become
HTTP responses in config.api.exception_handler.
"""

from datetime import timedelta

from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.response import Response
from rest_framework.views import APIView

from approvals.api import serializers as io
from approvals.models import ChangeRequest, Channel
from approvals.policy import policy_values
from approvals.rollback import rollback_request_submit
from approvals.selectors import change_requests_for, version_diff, versions_of
from approvals.services import (
    brake_pull,
    change_request_decide,
    change_request_submit,
    change_request_withdraw,
    quorum_policy_for,
)
from config.errors import ValidationFailed
from tenants.models import Tenant
from tenants.selectors import tenant_visible_or_404, tenants_visible_to
from toggles.models import Capability, Profile, ProfileVersion


def visible_tenant(request, slug: str) -> Tenant:
    return tenant_visible_or_404(request.user, slug)


class TenantListApi(APIView):
    @extend_schema(responses=io.TenantOutput(many=True))
    def get(self, request):
        return Response(io.TenantOutput(tenants_visible_to(request.user), many=True).data)


class CapabilityListApi(APIView):
    @extend_schema(responses=io.CapabilityOutput(many=True))
    def get(self, request):
        return Response(io.CapabilityOutput(Capability.objects.all(), many=True).data)


class ProfileListApi(APIView):
    @extend_schema(responses=io.ProfileOutput(many=True))
    def get(self, request, tenant):
        profiles = Profile.objects.filter(tenant=visible_tenant(request, tenant))
        return Response(io.ProfileOutput(profiles, many=True).data)


class VersionListApi(APIView):
    @extend_schema(responses=io.VersionOutput(many=True))
    def get(self, request, tenant, profile):
        found = get_object_or_404(Profile, tenant=visible_tenant(request, tenant), name=profile)
        return Response(io.VersionOutput(versions_of(found), many=True).data)


class VersionDetailApi(APIView):
    @extend_schema(responses=io.VersionOutput)
    def get(self, request, tenant, profile, number):
        found = get_object_or_404(
            ProfileVersion,
            profile__tenant=visible_tenant(request, tenant),
            profile__name=profile,
            number=number,
        )
        return Response(io.VersionOutput(found).data)


class VersionDiffApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("from", int, required=True, description="older version number"),
            OpenApiParameter("to", int, required=True, description="newer version number"),
        ],
        responses=inline_serializer(
            "VersionDiff",
            {
                "from_version": serializers.IntegerField(),
                "to_version": serializers.IntegerField(),
                "changes": serializers.ListField(child=serializers.DictField()),
            },
        ),
    )
    def get(self, request, tenant, profile):
        found = get_object_or_404(Profile, tenant=visible_tenant(request, tenant), name=profile)
        numbers = []
        for name in ("from", "to"):
            raw = request.query_params.get(name, "")
            if not raw.isdigit() or not 1 <= int(raw) <= found.current_version:
                last = found.current_version
                raise ValidationFailed(
                    f"'{name}' must be a version number of {found} between 1 and {last}, "
                    f"e.g. ?from=1&to={last}"
                )
            numbers.append(int(raw))
        changes = version_diff(profile=found, from_number=numbers[0], to_number=numbers[1])
        return Response({"from_version": numbers[0], "to_version": numbers[1], "changes": changes})


class ChangeRequestListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("status", str),
            OpenApiParameter("kind", str),
            OpenApiParameter("profile", str),
            OpenApiParameter("requester", str),
        ],
        responses=io.ChangeRequestOutput(many=True),
    )
    def get(self, request, tenant):
        filters = {
            k: request.query_params.get(k) for k in ("status", "kind", "profile", "requester")
        }
        requests = change_requests_for(tenant=visible_tenant(request, tenant), filters=filters)
        return Response(io.ChangeRequestOutput(requests[:500], many=True).data)

    @extend_schema(request=io.ChangeRequestInput, responses={201: io.ChangeRequestDetailOutput})
    def post(self, request, tenant):
        found = visible_tenant(request, tenant)
        data = _valid(io.ChangeRequestInput, request)
        profile = get_object_or_404(Profile, tenant=found, name=data["profile"])
        hours = data.get("time_box_hours")
        cr = change_request_submit(
            tenant=found,
            profile=profile,
            actor=request.user,
            changes=data["changes"],
            justification=data["justification"],
            base_version=data["base_version"],
            time_box=timedelta(hours=hours) if hours else None,
        )
        return Response(io.ChangeRequestDetailOutput(cr).data, status=status.HTTP_201_CREATED)


def _request_in(request, tenant: str, pk: int) -> ChangeRequest:
    return get_object_or_404(ChangeRequest, tenant=visible_tenant(request, tenant), pk=pk)


class ChangeRequestDetailApi(APIView):
    @extend_schema(responses=io.ChangeRequestDetailOutput)
    def get(self, request, tenant, pk):
        return Response(io.ChangeRequestDetailOutput(_request_in(request, tenant, pk)).data)


class ChangeRequestDecideApi(APIView):
    @extend_schema(request=io.DecisionInput, responses=io.ChangeRequestDetailOutput)
    def post(self, request, tenant, pk):
        cr = _request_in(request, tenant, pk)
        data = _valid(io.DecisionInput, request)
        cr = change_request_decide(
            change_request_id=cr.pk,
            actor=request.user,
            verdict=data["verdict"],
            comment=data["comment"],
            channel=Channel.API,
            seen_digest=data.get("digest"),
        )
        return Response(io.ChangeRequestDetailOutput(cr).data)


class ChangeRequestWithdrawApi(APIView):
    @extend_schema(request=io.WithdrawInput, responses=io.ChangeRequestDetailOutput)
    def post(self, request, tenant, pk):
        cr = _request_in(request, tenant, pk)
        data = _valid(io.WithdrawInput, request)
        cr = change_request_withdraw(
            change_request_id=cr.pk, actor=request.user, reason=data["reason"]
        )
        return Response(io.ChangeRequestDetailOutput(cr).data)


class PolicyApi(APIView):
    @extend_schema(responses=io.PolicyOutput)
    def get(self, request, tenant):
        policy = quorum_policy_for(visible_tenant(request, tenant))
        return Response(
            {
                "version": policy.version,
                "values": policy_values(policy),
                "floor": settings.REDLINE_QUORUM_FLOOR,
            }
        )

    @extend_schema(
        request=io.PolicyChangeInput,
        responses={201: io.ChangeRequestDetailOutput},
        description="A policy change is a change request: it opens one, it changes nothing yet.",
    )
    def post(self, request, tenant):
        found = visible_tenant(request, tenant)
        data = _valid(io.PolicyChangeInput, request)
        cr = change_request_submit(
            tenant=found,
            profile=None,
            actor=request.user,
            changes=data["changes"],
            justification=data["justification"],
            base_version=data["base_version"],
        )
        return Response(io.ChangeRequestDetailOutput(cr).data, status=status.HTTP_201_CREATED)


class BrakeApi(APIView):
    @extend_schema(request=io.BrakeInput, responses=io.BrakeOutput)
    def post(self, request, tenant):
        found = visible_tenant(request, tenant)
        data = _valid(io.BrakeInput, request)
        profiles = None
        if name := data.get("profile"):
            profiles = [get_object_or_404(Profile, tenant=found, name=name)]
        result = brake_pull(
            tenant=found,
            actor=request.user,
            reason=data["reason"],
            keys=data["capabilities"],
            profiles=profiles,
        )
        return Response(io.BrakeOutput(result).data)


class ProfileRollbackApi(APIView):
    class RollbackInput(serializers.Serializer):
        to_version = serializers.IntegerField(min_value=1)
        justification = serializers.CharField(max_length=5000)

    @extend_schema(
        request=RollbackInput,
        responses={201: io.ChangeRequestDetailOutput},
        description=(
            "Opens a change request that restores the values of an earlier version; it is "
            "classified (tightening or loosening) and approved like any other change."
        ),
    )
    def post(self, request, tenant, profile):
        found = get_object_or_404(Profile, tenant=visible_tenant(request, tenant), name=profile)
        data = _valid(self.RollbackInput, request)
        cr = rollback_request_submit(
            profile=found,
            to_version=data["to_version"],
            actor=request.user,
            justification=data["justification"],
        )
        return Response(io.ChangeRequestDetailOutput(cr).data, status=status.HTTP_201_CREATED)


def _valid(serializer_class, request) -> dict:
    serializer = serializer_class(data=request.data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data
