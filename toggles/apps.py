from django.apps import AppConfig


class TogglesConfig(AppConfig):
    name = "toggles"
    verbose_name = "Capabilities and profiles"

    def ready(self):
        from toggles import signals  # noqa: F401
