from django.apps import AppConfig


class TokenVersionServerConfig(AppConfig):
    name = "tokenversion.server"
    label = "tokenversion_server"
    verbose_name = "Token revocation"
    default_auto_field = "django.db.models.BigAutoField"
