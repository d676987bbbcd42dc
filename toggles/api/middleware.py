"""The deployment-facing endpoints skip the middleware that only people need.

Installed right after SecurityMiddleware. Sessions, CSRF, messages, CSP, login lockout and htmx
serve the web console; on the config hot path they cost several times the view itself, and a
deployment, authenticated by its token, uses none of them. So requests for GET /api/v1/config
and OFREP go straight to their views: the host is still validated against ALLOWED_HOSTS,
SecurityMiddleware still applies, and errors still become responses and log lines. The URLconf
keeps the same routes for reverse() and for a process without this middleware.
"""

from django.conf import settings

from toggles.api.views import config_view
from toggles.ofrep.views import evaluate_flag, evaluate_flags

FLAG_PREFIX = "/ofrep/v1/evaluate/flags/"


class DeploymentApiMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response
        self.views = {"/api/v1/config": config_view, "/ofrep/v1/evaluate/flags": evaluate_flags}
        if settings.REDLINE_BENCH_VIEWS:
            from toggles.api.bench import minimal_view

            self.views["/bench/minimal"] = minimal_view

    def __call__(self, request):
        path = request.path_info
        view = self.views.get(path)
        if view is not None:
            request.get_host()
            return view(request)
        if path.startswith(FLAG_PREFIX) and len(path) > len(FLAG_PREFIX):
            request.get_host()
            return evaluate_flag(request, path[len(FLAG_PREFIX) :])
        return self.get_response(request)
