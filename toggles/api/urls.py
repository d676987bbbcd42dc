from django.urls import path

from toggles.api import views

urlpatterns = [
    path("config", views.config_view, name="api-config"),
    path("config/ack", views.ConfigAckApi.as_view(), name="api-config-ack"),
    path("signing-keys", views.SigningKeysApi.as_view(), name="api-signing-keys"),
]
