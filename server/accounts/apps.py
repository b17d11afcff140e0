from django.apps import AppConfig


class AccountsConfig(AppConfig):
    name = "accounts"
    verbose_name = "Keycloak users"
    default_auto_field = "django.db.models.BigAutoField"
