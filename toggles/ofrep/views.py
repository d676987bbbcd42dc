"""OpenFeature Remote Evaluation Protocol (OFREP) endpoints, served from the prebuilt document.

The evaluation context is read and checked but changes nothing: a deployment's token selects
its config. Errors take OFREP's shape ({"errorCode", "errorDetails"}); a rate limit answers 429
with Retry-After in whole seconds, which OFREP providers parse.
"""

import json

from django.http import HttpResponse, HttpResponseNotAllowed, HttpResponseNotModified, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from rest_framework.exceptions import APIException

from config.errors import DomainError
from toggles.api.http import CACHE_CONTROL, error_status, etag_matches, served_document
from toggles.ofrep.evaluation import INVALID_CONTEXT, PARSE_ERROR, flag_not_found


class BadRequest(Exception):
    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


def _check_request(request) -> None:
    """The body is empty or a JSON object whose optional `context` is an object."""
    if not request.body:
        return
    try:
        data = json.loads(request.body)
    except (UnicodeDecodeError, ValueError):
        raise BadRequest(PARSE_ERROR, "the request body is not valid JSON") from None
    if not isinstance(data, dict):
        raise BadRequest(PARSE_ERROR, "the request body must be a JSON object")
    if not isinstance(data.get("context", {}), dict):
        raise BadRequest(INVALID_CONTEXT, "context must be a JSON object")


def _failure(error: APIException | DomainError) -> JsonResponse:
    status, _, message, headers = error_status(error)
    return JsonResponse({"errorDetails": message}, status=status, headers=headers)


@csrf_exempt
def evaluate_flag(request, key: str):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        document = served_document(request)
        _check_request(request)
    except (APIException, DomainError) as error:
        return _failure(error)
    except BadRequest as error:
        return JsonResponse(
            {"key": key, "errorCode": error.code, "errorDetails": str(error)}, status=400
        )
    body = document.flags.get(key)
    if body is None:
        return JsonResponse(
            flag_not_found(key, f"no capability '{key}' in the config of this deployment"),
            status=404,
        )
    return HttpResponse(body, content_type="application/json")


@csrf_exempt
def evaluate_flags(request):
    if request.method != "POST":
        return HttpResponseNotAllowed(["POST"])
    try:
        document = served_document(request)
        _check_request(request)
    except (APIException, DomainError) as error:
        return _failure(error)
    except BadRequest as error:
        return JsonResponse({"errorCode": error.code, "errorDetails": str(error)}, status=400)
    if etag_matches(request.META.get("HTTP_IF_NONE_MATCH"), document.flags_etag):
        return HttpResponseNotModified(
            headers={"ETag": document.flags_etag, "Cache-Control": CACHE_CONTROL}
        )
    return HttpResponse(
        document.flags_body,
        content_type="application/json",
        headers={"ETag": document.flags_etag, "Cache-Control": CACHE_CONTROL},
    )
