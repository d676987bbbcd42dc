"""Where each rollout stands, for people and the console, under /api/v1/tenants/{tenant}/.

A rollout of another tenant is a 404. The rules live in toggles.rollout; to roll back, submit
a change request that restores an earlier version (POST …/profiles/{profile}/rollback).
"""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_field
from rest_framework import serializers
from rest_framework.response import Response
from rest_framework.views import APIView

from tenants.models import Tenant
from tenants.selectors import tenant_visible_or_404
from toggles.models import DeliveryMode, Rollout, RolloutStatus, RolloutTarget, TargetStatus
from toggles.rollout import WAVE_NAMES, rollout_progress, rollout_resume, rollouts_with_counts

LIST_LIMIT = 100


def _visible_tenant(request, slug: str) -> Tenant:
    return tenant_visible_or_404(request.user, slug)


def _rollout_in(request, tenant: str, pk: int) -> Rollout:
    rollouts = rollouts_with_counts(
        Rollout.objects.filter(profile__tenant=_visible_tenant(request, tenant))
    )
    return get_object_or_404(rollouts, pk=pk)


WAVES = list(WAVE_NAMES.values())


class RolloutCounts(serializers.Serializer):
    pending = serializers.IntegerField()
    delivering = serializers.IntegerField()
    delivered = serializers.IntegerField()
    failed = serializers.IntegerField()
    superseded = serializers.IntegerField()


class RolloutTargetOutput(serializers.Serializer):
    deployment = serializers.CharField(source="deployment.slug")
    canary = serializers.BooleanField(source="deployment.is_canary")
    wave = serializers.SerializerMethodField()
    mode = serializers.ChoiceField(choices=DeliveryMode.choices)
    status = serializers.ChoiceField(choices=TargetStatus.choices)
    attempts = serializers.IntegerField()
    last_error = serializers.CharField()
    acked_version = serializers.IntegerField(
        allow_null=True, help_text="The version the deployment acknowledged for this rollout"
    )
    deployment_acked_version = serializers.IntegerField(
        source="deployment.acked_version",
        allow_null=True,
        help_text="The newest version the deployment has acknowledged",
    )
    released_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)
    settled_at = serializers.DateTimeField(allow_null=True)
    updated_at = serializers.DateTimeField()

    @extend_schema_field(serializers.ChoiceField(choices=WAVES))
    def get_wave(self, target) -> str:
        return WAVE_NAMES[target.wave]


class RolloutWaves(serializers.Serializer):
    canary = RolloutCounts()
    general = RolloutCounts()


class RolloutProgressOutput(serializers.Serializer):
    total = serializers.IntegerField()
    by_status = RolloutCounts()
    by_wave = RolloutWaves()


class RolloutOutput(serializers.Serializer):
    id = serializers.IntegerField()
    profile = serializers.CharField(source="profile.name")
    version = serializers.IntegerField(source="version.number")
    status = serializers.ChoiceField(choices=RolloutStatus.choices)
    status_reason = serializers.CharField()
    wave = serializers.SerializerMethodField()
    soak_until = serializers.DateTimeField(allow_null=True)
    superseded_by_version = serializers.IntegerField(
        source="superseded_by.version.number", allow_null=True, default=None
    )
    created_at = serializers.DateTimeField()
    started_at = serializers.DateTimeField(allow_null=True)
    finished_at = serializers.DateTimeField(allow_null=True)
    counts = serializers.SerializerMethodField()

    @extend_schema_field(serializers.ChoiceField(choices=WAVES))
    def get_wave(self, rollout) -> str:
        return WAVE_NAMES[rollout.wave]

    @extend_schema_field(RolloutCounts)
    def get_counts(self, rollout) -> dict:
        return {status: getattr(rollout, f"n_{status}") for status in TargetStatus.values}


class RolloutDetailOutput(RolloutOutput):
    progress = serializers.SerializerMethodField()
    targets = serializers.SerializerMethodField()

    @extend_schema_field(RolloutProgressOutput)
    def get_progress(self, rollout) -> dict:
        return rollout_progress(rollout)

    @extend_schema_field(RolloutTargetOutput(many=True))
    def get_targets(self, rollout) -> list:
        targets = RolloutTarget.objects.filter(rollout=rollout).select_related("deployment")
        return RolloutTargetOutput(targets, many=True).data


class RolloutListApi(APIView):
    @extend_schema(
        parameters=[
            OpenApiParameter("profile", str, description="only this profile's rollouts"),
            OpenApiParameter("status", str, enum=RolloutStatus.values),
        ],
        responses=RolloutOutput(many=True),
        description=f"The tenant's rollouts, newest first (at most {LIST_LIMIT}).",
    )
    def get(self, request, tenant):
        rollouts = Rollout.objects.filter(profile__tenant=_visible_tenant(request, tenant))
        if profile := request.query_params.get("profile"):
            rollouts = rollouts.filter(profile__name=profile)
        if status := request.query_params.get("status"):
            rollouts = rollouts.filter(status=status)
        rollouts = rollouts_with_counts(rollouts.select_related("superseded_by__version"))
        return Response(RolloutOutput(rollouts[:LIST_LIMIT], many=True).data)


class RolloutDetailApi(APIView):
    @extend_schema(responses=RolloutDetailOutput)
    def get(self, request, tenant, pk):
        return Response(RolloutDetailOutput(_rollout_in(request, tenant, pk)).data)


class RolloutResumeApi(APIView):
    class RolloutResumeInput(serializers.Serializer):
        reason = serializers.CharField(max_length=2000)

    @extend_schema(
        request=RolloutResumeInput,
        responses=RolloutDetailOutput,
        description=(
            "An admin of either party lets a paused or failed rollout go on: failed "
            "deployments get a fresh set of attempts and every other deployment is released."
        ),
    )
    def post(self, request, tenant, pk):
        found = _rollout_in(request, tenant, pk)
        serializer = self.RolloutResumeInput(data=request.data)
        serializer.is_valid(raise_exception=True)
        rollout_resume(
            rollout_id=found.pk, actor=request.user, reason=serializer.validated_data["reason"]
        )
        return Response(RolloutDetailOutput(_rollout_in(request, tenant, pk)).data)
