from django.apps import AppConfig


class TogglesConfig(AppConfig):
    name = "toggles"
    verbose_name = "Capabilities and profiles"
