"""Deployment tokens on requests: `Authorization: Bearer <token>` or `X-API-Key: <token>`.

A token is looked up by its SHA-256 (tenants.tokens), so the secret itself is never compared.
"""

from rest_framework.authentication import BaseAuthentication
from rest_framework.exceptions import AuthenticationFailed, NotAuthenticated
from rest_framework.permissions import BasePermission

from tenants.models import Deployment
from tenants.selectors import deployment_for_token
from tenants.tokens import token_looks_valid

BEARER_CHALLENGE = 'Bearer realm="redline"'
MISSING_TOKEN = (
    "send the deployment token as 'Authorization: Bearer <token>' or 'X-API-Key: <token>'"  # noqa: S105 (a message)
)
MALFORMED_TOKEN = "malformed deployment token"  # noqa: S105 (a message)
UNKNOWN_TOKEN = "unknown or revoked deployment token"  # noqa: S105 (a message)


def request_token(request) -> str | None:
    """The deployment token a Django request carries, if any."""
    header = request.META.get("HTTP_AUTHORIZATION")
    if header:
        scheme, _, token = header.partition(" ")
        if scheme.lower() == "bearer":
            return token.strip()
        return None
    return request.META.get("HTTP_X_API_KEY") or None


class DeploymentPrincipal:
    """The caller of a DRF view authenticated by a deployment token."""

    is_authenticated = True
    is_anonymous = False

    def __init__(self, deployment: Deployment):
        self.deployment = deployment

    def __str__(self) -> str:
        return f"deployment:{self.deployment}"


class DeploymentTokenAuthentication(BaseAuthentication):
    def authenticate(self, request):
        token = request_token(request._request)
        if token is None:
            raise NotAuthenticated(MISSING_TOKEN)
        if not token_looks_valid(token):
            raise AuthenticationFailed(MALFORMED_TOKEN)
        deployment = deployment_for_token(token)
        if deployment is None:
            raise AuthenticationFailed(UNKNOWN_TOKEN)
        return DeploymentPrincipal(deployment), token

    def authenticate_header(self, request) -> str:
        return BEARER_CHALLENGE


class IsDeployment(BasePermission):
    def has_permission(self, request, view) -> bool:
        return isinstance(request.user, DeploymentPrincipal)
