"""python manage.py revoke_api_key <prefix>: disable an API key (the admin's "Revoke the selected API keys")."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ...models import ApiKey
from .revoke import _whoami


class Command(BaseCommand):
    help = "Revoke (disable) the API key with this prefix, as the admin and key lists show it (tvk_XXXXXXXX)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("prefix", help="the key's prefix, e.g. tvk_1a2B3c4D")

    def handle(self, *args, **options) -> None:
        try:
            keys = list(ApiKey.objects.filter(prefix=options["prefix"], revoked_at__isnull=True))
            if not keys:
                raise CommandError(f"no active API key has the prefix {options['prefix']!r}")
            for api_key in keys:
                api_key.revoke(f"cli: {_whoami()}")
                self.stdout.write(f"Revoked API key {api_key.prefix} '{api_key.name}' of "
                                  f"{api_key.holder.get_username()}.")
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable, nothing was revoked: {exc}") from None
