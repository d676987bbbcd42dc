from django.urls import path

from approvals.console import views
from approvals.console.offboard import offboard, offboard_bundle

app_name = "console"

urlpatterns = [
    path("", views.home, name="home"),
    path("t/<slug:tenant>/", views.overview, name="overview"),
    path("t/<slug:tenant>/propose/", views.propose, name="propose"),
    path("t/<slug:tenant>/propose/preview", views.propose_preview, name="propose-preview"),
    path("t/<slug:tenant>/requests/", views.request_list, name="requests"),
    path("t/<slug:tenant>/requests/<int:pk>/", views.request_detail, name="request"),
    path("t/<slug:tenant>/requests/<int:pk>/decide", views.request_decide, name="decide"),
    path("t/<slug:tenant>/requests/<int:pk>/withdraw", views.request_withdraw, name="withdraw"),
    path("t/<slug:tenant>/brake/", views.brake, name="brake"),
    path("t/<slug:tenant>/versions/", views.versions, name="versions"),
    path("t/<slug:tenant>/policy/", views.policy, name="policy"),
    path("t/<slug:tenant>/deployments/", views.deployments, name="deployments"),
    path(
        "t/<slug:tenant>/deployments/<slug:slug>/tokens",
        views.token_issue,
        name="token-issue",
    ),
    path(
        "t/<slug:tenant>/deployments/<slug:slug>/tokens/<int:token_id>/revoke",
        views.token_revoke,
        name="token-revoke",
    ),
    path("t/<slug:tenant>/rollouts/", views.rollouts, name="rollouts"),
    path("t/<slug:tenant>/rollouts/<int:pk>/", views.rollout_detail, name="rollout"),
    path(
        "t/<slug:tenant>/rollouts/<int:pk>/resume",
        views.rollout_resume_view,
        name="rollout-resume",
    ),
    path(
        "t/<slug:tenant>/rollouts/<int:pk>/rollback",
        views.rollout_rollback,
        name="rollout-rollback",
    ),
    path(
        "t/<slug:tenant>/deployments/<slug:slug>/webhook",
        views.webhook_set,
        name="webhook-set",
    ),
    path(
        "t/<slug:tenant>/deployments/<slug:slug>/webhook/test",
        views.webhook_test,
        name="webhook-test",
    ),
    path("t/<slug:tenant>/audit/", views.audit_log, name="audit"),
    path("t/<slug:tenant>/offboard/", offboard, name="offboard"),
    path("t/<slug:tenant>/offboard/<str:name>.tar", offboard_bundle, name="offboard-bundle"),
    path("t/<slug:tenant>/audit/export.jsonl", views.audit_export, name="audit-export"),
]
