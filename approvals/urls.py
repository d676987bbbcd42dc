from django.urls import path

from approvals import views

urlpatterns = [
    path("review/<str:token>/", views.review_link, name="review-link"),
    path("dev/outbox/", views.outbox, name="dev-outbox"),
    path("dev/outbox/<str:name>/", views.outbox_mail, name="dev-outbox-mail"),
    path("dev/outbox/<str:name>/html", views.outbox_mail_html, name="dev-outbox-mail-html"),
]
