from django.conf import settings
from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from audit.api import AuditEventsApi
from config.health import healthz, readyz
from config.metrics import metrics_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("", include("approvals.urls")),
    path("login/", auth_views.LoginView.as_view(redirect_authenticated_user=True), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("api/v1/", include("toggles.api.urls")),
    path("ofrep/v1/", include("toggles.ofrep.urls")),
    path("api/v1/", include("approvals.api.urls")),
    path("api/v1/audit/events", AuditEventsApi.as_view(), name="api-audit-events"),
    path("api/schema/", SpectacularAPIView.as_view(), name="schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="schema"), name="api-docs"),
    path("", include("approvals.console.urls")),
]

if settings.REDLINE_BENCH_VIEWS:
    from toggles.api.bench import minimal_view

    urlpatterns[:0] = [
        path("bench/minimal", minimal_view),  # taken by toggles.api.middleware, as the hot path
        path("bench/full-stack", minimal_view),  # through every middleware
    ]
