"""python manage.py create_api_key <username> --name "SIEM": a key for the REST API, printed once."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ...models import ApiKey
from .revoke import _whoami


class Command(BaseCommand):
    help = ("Create an API key for POST /tokenversion/revocations that acts as USERNAME. The key is printed "
            "once, alone on standard output; the provider stores only its hash.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("username", help="the Django user the key acts as (its holder)")
        parser.add_argument("--name", required=True, help="what the key is for, e.g. 'SIEM rule engine'")

    def handle(self, *args, **options) -> None:
        name = options["name"].strip()
        if not name or len(name) > 100:
            raise CommandError("--name must be 1 to 100 characters")
        try:
            holder = get_user_model()._default_manager.get_by_natural_key(options["username"])
        except get_user_model().DoesNotExist:
            raise CommandError(f"unknown user {options['username']!r}") from None
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable, no key was created: {exc}") from None
        if not holder.is_active:
            raise CommandError(f"user {options['username']!r} is inactive: a key for it would not authenticate")
        try:
            api_key, key = ApiKey.issue(holder, name, created_by=f"cli: {_whoami()}")
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable, no key was created: {exc}") from None
        self.stderr.write(f"API key {api_key.prefix} '{name}' created for {holder.get_username()}. "
                          "It is shown now and never again:")
        self.stdout.write(key)
        if not holder.has_perm("tokenversion_server.revoke_tokens"):
            self.stderr.write(f"warning: {holder.get_username()} lacks tokenversion_server.revoke_tokens, so the "
                              "key is refused (403) until that permission is granted")
