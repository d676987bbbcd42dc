from django.urls import path

from approvals.api import views
from toggles import rollout_api

urlpatterns = [
    path("capabilities", views.CapabilityListApi.as_view(), name="api-capabilities"),
    path("tenants/", views.TenantListApi.as_view(), name="api-tenants"),
    path("tenants/<slug:tenant>/profiles/", views.ProfileListApi.as_view(), name="api-profiles"),
    path(
        "tenants/<slug:tenant>/profiles/<slug:profile>/versions/",
        views.VersionListApi.as_view(),
        name="api-versions",
    ),
    path(
        "tenants/<slug:tenant>/profiles/<slug:profile>/versions/<int:number>/",
        views.VersionDetailApi.as_view(),
        name="api-version",
    ),
    path(
        "tenants/<slug:tenant>/profiles/<slug:profile>/diff",
        views.VersionDiffApi.as_view(),
        name="api-version-diff",
    ),
    path(
        "tenants/<slug:tenant>/change-requests/",
        views.ChangeRequestListApi.as_view(),
        name="api-change-requests",
    ),
    path(
        "tenants/<slug:tenant>/change-requests/<int:pk>/",
        views.ChangeRequestDetailApi.as_view(),
        name="api-change-request",
    ),
    path(
        "tenants/<slug:tenant>/change-requests/<int:pk>/decide",
        views.ChangeRequestDecideApi.as_view(),
        name="api-change-request-decide",
    ),
    path(
        "tenants/<slug:tenant>/change-requests/<int:pk>/withdraw",
        views.ChangeRequestWithdrawApi.as_view(),
        name="api-change-request-withdraw",
    ),
    path("tenants/<slug:tenant>/policy", views.PolicyApi.as_view(), name="api-policy"),
    path("tenants/<slug:tenant>/brake", views.BrakeApi.as_view(), name="api-brake"),
    path(
        "tenants/<slug:tenant>/profiles/<slug:profile>/rollback",
        views.ProfileRollbackApi.as_view(),
        name="api-profile-rollback",
    ),
    path(
        "tenants/<slug:tenant>/rollouts/", rollout_api.RolloutListApi.as_view(), name="api-rollouts"
    ),
    path(
        "tenants/<slug:tenant>/rollouts/<int:pk>/",
        rollout_api.RolloutDetailApi.as_view(),
        name="api-rollout",
    ),
    path(
        "tenants/<slug:tenant>/rollouts/<int:pk>/resume",
        rollout_api.RolloutResumeApi.as_view(),
        name="api-rollout-resume",
    ),
]
