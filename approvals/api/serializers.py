from rest_framework import serializers

from approvals.models import ChangeRequest, Decision
from approvals.selectors import change_request_progress
from toggles.models import Capability, Profile, ProfileVersion


class TenantOutput(serializers.Serializer):
    slug = serializers.CharField()
    name = serializers.CharField()


class CapabilityOutput(serializers.ModelSerializer):
    class Meta:
        model = Capability
        fields = [
            "key",
            "title",
            "description",
            "category",
            "value_type",
            "risk_tier",
            "is_red_line",
            "fixed_value",
            "default",
            "minimum",
            "maximum",
            "choices",
            "max_length",
            "safe_value",
            "safer",
        ]


class ProfileOutput(serializers.ModelSerializer):
    class Meta:
        model = Profile
        fields = ["name", "current_version", "created_at"]


class VersionOutput(serializers.ModelSerializer):
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = ProfileVersion
        fields = [
            "number",
            "kind",
            "source",
            "values",
            "reason",
            "created_by",
            "created_at",
            "digest",
        ]


class DecisionOutput(serializers.ModelSerializer):
    reviewer = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Decision
        fields = ["reviewer", "party", "verdict", "comment", "channel", "created_at"]


class ChangeRequestOutput(serializers.ModelSerializer):
    profile = serializers.SlugRelatedField(slug_field="name", read_only=True)
    requester = serializers.SlugRelatedField(slug_field="username", read_only=True)
    time_box_seconds = serializers.SerializerMethodField()

    class Meta:
        model = ChangeRequest
        fields = [
            "id",
            "kind",
            "profile",
            "base_version",
            "changes",
            "previous",
            "directions",
            "risk_tier",
            "is_loosening",
            "justification",
            "requester",
            "time_box_seconds",
            "status",
            "status_reason",
            "digest",
            "created_at",
            "expires_at",
            "approved_at",
            "applied_at",
            "applied_version",
            "revert_at",
            "reverted_at",
        ]

    def get_time_box_seconds(self, cr) -> int | None:
        return int(cr.time_box.total_seconds()) if cr.time_box else None


class ChangeRequestDetailOutput(ChangeRequestOutput):
    decisions = DecisionOutput(many=True, read_only=True)
    progress = serializers.SerializerMethodField()

    class Meta(ChangeRequestOutput.Meta):
        fields = [*ChangeRequestOutput.Meta.fields, "progress", "decisions"]

    def get_progress(self, cr) -> dict:
        return change_request_progress(cr)


class ChangeRequestInput(serializers.Serializer):
    profile = serializers.SlugField(default="default")
    base_version = serializers.IntegerField(min_value=1)
    changes = serializers.DictField(child=serializers.JSONField(), allow_empty=False)
    justification = serializers.CharField(max_length=5000)
    time_box_hours = serializers.FloatField(required=False, min_value=0, allow_null=True)


class DecisionInput(serializers.Serializer):
    verdict = serializers.ChoiceField(choices=["approve", "reject"])
    comment = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    digest = serializers.CharField(required=False, max_length=71)


class WithdrawInput(serializers.Serializer):
    reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class PolicyOutput(serializers.Serializer):
    version = serializers.IntegerField()
    values = serializers.DictField(child=serializers.IntegerField())
    floor = serializers.DictField(child=serializers.IntegerField())


class PolicyChangeInput(serializers.Serializer):
    base_version = serializers.IntegerField(min_value=1)
    changes = serializers.DictField(child=serializers.JSONField(), allow_empty=False)
    justification = serializers.CharField(max_length=5000)


class BrakeInput(serializers.Serializer):
    capabilities = serializers.JSONField(
        help_text='A list of capability keys, or "all" for every adjustable capability'
    )
    reason = serializers.CharField(max_length=5000)
    profile = serializers.SlugField(required=False)

    def validate_capabilities(self, value):
        if value == "all":
            return None
        if isinstance(value, list) and value and all(isinstance(k, str) for k in value):
            return value
        raise serializers.ValidationError('give a list of capability keys, or "all"')


class BrakeOutput(serializers.Serializer):
    versions = serializers.DictField(child=serializers.IntegerField())
    unchanged = serializers.ListField(child=serializers.CharField())
