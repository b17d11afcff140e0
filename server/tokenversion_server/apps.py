from django.apps import AppConfig


class TokenVersionServerConfig(AppConfig):
    name = "tokenversion_server"
    label = "tokenversion_server"
    verbose_name = "Token revocation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks, dev_secrets  # noqa: F401  (register the provider's system checks)
        from .publish import connect_fast_path

        connect_fast_path()  # publish committed revocations on Redis when REDIS_URL is set
