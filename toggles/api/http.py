"""What the plain views of the config API share: the document a request may have, and errors."""

from django.http import JsonResponse
from rest_framework.exceptions import APIException, Throttled

from config.errors import DomainError
from tenants.authentication import BEARER_CHALLENGE, MISSING_TOKEN, request_token
from toggles.documents import ConfigDocument
from toggles.rollout import rollout_fetch_seen
from toggles.serving import config_cache
from toggles.throttling import rate_limiter

CACHE_CONTROL = "private, no-cache"


class NoToken(APIException):
    status_code = 401
    default_code = "not_authenticated"
    default_detail = MISSING_TOKEN


def served_document(request) -> ConfigDocument:
    """The config document of the deployment whose token the request carries.

    Raises NoToken, AuthenticationFailed (malformed, unknown or revoked token), Throttled and
    ProfileMissing.
    """
    token = request_token(request)
    if not token:
        raise NoToken
    binding = config_cache.binding(token)
    rate_limiter.check(binding.token)
    document = config_cache.document(binding)
    rollout_fetch_seen(
        deployment_id=binding.deployment_id,
        profile_id=document.profile_id,
        version=document.version,
    )
    return document


def etag_matches(header: str | None, etag: str) -> bool:
    """If-None-Match against a strong ETag, compared weakly as RFC 9110 asks."""
    if not header:
        return False
    if header == etag or header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


def error_status(error: APIException | DomainError) -> tuple[int, str, str, dict[str, str]]:
    """(status, code, message, headers) of an error on a plain view."""
    headers = {}
    if isinstance(error, DomainError):
        status, code, message = error.status_code, error.code, str(error)
    else:
        status, code, message = error.status_code, error.get_codes(), str(error.detail)
    if status == 401:
        headers["WWW-Authenticate"] = BEARER_CHALLENGE
    if isinstance(error, Throttled):
        headers["Retry-After"] = str(int(error.wait))
    return status, code, message, headers


def error_response(error: APIException | DomainError) -> JsonResponse:
    status, code, message, headers = error_status(error)
    return JsonResponse({"error": code, "detail": message}, status=status, headers=headers)
