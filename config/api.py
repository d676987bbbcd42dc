"""One place where domain errors become HTTP responses."""

from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from config.errors import DomainError


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"error": exc.code, "detail": str(exc)}, status=exc.status_code)
    return drf_exception_handler(exc, context)
