"""The config API of deployments, under /api/v1/.

GET /api/v1/config is the hot path: a plain Django view that sends the prebuilt, signed bytes
of toggles.serving, with no DRF on the way. Its OpenAPI description is in toggles.api.schema.
"""

from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseNotModified
from django.views.decorators.csrf import csrf_exempt
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers
from rest_framework.exceptions import APIException
from rest_framework.permissions import AllowAny
from rest_framework.response import Response
from rest_framework.views import APIView

from config.errors import DomainError
from tenants.authentication import DeploymentTokenAuthentication, IsDeployment
from toggles.acks import deployment_config_ack
from toggles.api import schema  # noqa: F401 (registers the deployment token's OpenAPI scheme)
from toggles.api.http import CACHE_CONTROL, error_response, etag_matches, served_document
from toggles.rollout import rollout_record_ack
from toggles.signing import SIGNATURE_HEADER, jwks
from toggles.throttling import DeploymentRateThrottle


@csrf_exempt  # authenticated by token, never by cookie
def config_view(request):
    if request.method != "GET":
        return HttpResponseNotAllowed(["GET"])
    try:
        document = served_document(request)
    except (APIException, DomainError) as error:
        return error_response(error)
    if etag_matches(request.META.get("HTTP_IF_NONE_MATCH"), document.etag):
        return HttpResponseNotModified(
            headers={"ETag": document.etag, "Cache-Control": CACHE_CONTROL}
        )
    return HttpResponse(
        document.body,
        content_type="application/json",
        headers={
            "ETag": document.etag,
            "Cache-Control": CACHE_CONTROL,
            SIGNATURE_HEADER: document.signature,
            "Config-Version": str(document.version),
        },
    )


ErrorOutput = inline_serializer(
    "ConfigError", {"error": serializers.CharField(), "detail": serializers.CharField()}
)


class SigningKeysApi(APIView):
    """The public keys that verify Config-Signature; clients may cache them for five minutes."""

    authentication_classes = []
    permission_classes = [AllowAny]

    class KeyOutput(serializers.Serializer):
        kty = serializers.ChoiceField(choices=["OKP"])
        crv = serializers.ChoiceField(choices=["Ed25519"])
        x = serializers.CharField(help_text="the raw public key, base64url")
        kid = serializers.CharField(help_text="RFC 7638 thumbprint, named in Config-Signature")
        use = serializers.ChoiceField(choices=["sig"])
        alg = serializers.ChoiceField(choices=["EdDSA"])

    @extend_schema(
        operation_id="signing_keys",
        tags=["config"],
        responses=inline_serializer(
            "SigningKeys", {"keys": KeyOutput(many=True, help_text="the signing key first")}
        ),
    )
    def get(self, request):
        return Response(jwks(), headers={"Cache-Control": "public, max-age=300"})


class ConfigAckApi(APIView):
    """A deployment reports the config version it applied; versions only increase."""

    authentication_classes = [DeploymentTokenAuthentication]
    permission_classes = [IsDeployment]
    throttle_classes = [DeploymentRateThrottle]

    class InputSerializer(serializers.Serializer):
        version = serializers.IntegerField(min_value=1, max_value=2**31 - 1)

        class Meta:
            ref_name = "ConfigAckInput"

    class OutputSerializer(serializers.Serializer):
        deployment = serializers.CharField(source="__str__")
        profile = serializers.CharField(source="profile_name")
        acked_version = serializers.IntegerField()
        acked_at = serializers.DateTimeField()

        class Meta:
            ref_name = "ConfigAck"

    @extend_schema(
        operation_id="config_ack",
        tags=["config"],
        request=InputSerializer,
        responses={
            200: OutputSerializer,
            400: ErrorOutput,
            401: ErrorOutput,
            404: ErrorOutput,
            409: ErrorOutput,
            429: ErrorOutput,
        },
    )
    def post(self, request):
        incoming = self.InputSerializer(data=request.data)
        incoming.is_valid(raise_exception=True)
        deployment = deployment_config_ack(
            deployment=request.user.deployment, version=incoming.validated_data["version"]
        )
        rollout_record_ack(deployment=deployment, version=deployment.acked_version)
        return Response(self.OutputSerializer(deployment).data)
