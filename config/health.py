"""Liveness and readiness probes for load balancers and orchestrators."""

from django.core.cache import cache
from django.db import connection
from django.http import JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


@require_GET
@never_cache
def healthz(request):
    """The process is up; says nothing about its dependencies."""
    return JsonResponse({"status": "ok"})


def _postgres_answers() -> bool:
    try:
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            return cursor.fetchone() == (1,)
    except Exception:
        return False


def _redis_answers() -> bool:
    try:
        return bool(cache._cache.get_client().ping())
    except Exception:
        return False


@require_GET
@never_cache
def readyz(request):
    """Ready to serve: PostgreSQL and Redis both answer."""
    checks = {"postgres": _postgres_answers(), "redis": _redis_answers()}
    down = sorted(name for name, ok in checks.items() if not ok)
    if down:
        return JsonResponse({"status": "unavailable", "down": down, "checks": checks}, status=503)
    return JsonResponse({"status": "ok", "checks": checks})
