"""python manage.py revoke_service_key <service-name>: the service's reports are refused (401) from now on."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ...models import ServiceCredential
from .revoke import _whoami


class Command(BaseCommand):
    help = "Revoke the active key of service NAME: its reports are refused (401) until it gets a new key."

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the service's name, as create_service_key was given it")

    def handle(self, *args, **options) -> None:
        name = options["name"]
        try:
            keys = list(ServiceCredential.objects.filter(name=name, revoked_at__isnull=True))
            if not keys:
                raise CommandError(f"service {name!r} has no active key")
            for credential in keys:
                credential.revoke(f"cli: {_whoami()}")
                self.stdout.write(f"Revoked service key {credential.prefix}… of {name}.")
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable, nothing was revoked: {exc}") from None
