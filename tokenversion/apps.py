from django.apps import AppConfig


class TokenVersionConfig(AppConfig):
    name = "tokenversion"
    verbose_name = "Token version validation"

    def ready(self) -> None:
        from . import checks  # noqa: F401  (registers the system checks)
