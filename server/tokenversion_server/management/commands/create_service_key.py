"""python manage.py create_service_key <service-name>: the key a service reports with, printed once."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, IntegrityError, transaction

from ...models import SERVICE_NAME, ServiceCredential
from .revoke import _whoami


class Command(BaseCommand):
    help = ("Create the key service NAME reports with (POST /tokenversion/reports; the service's REPORT_KEY). "
            "The key is printed once, alone on standard output; the provider stores only its hash. One active "
            "key per service: --replace revokes the current one in the same transaction.")

    def add_arguments(self, parser) -> None:
        parser.add_argument("name", help="the service's name, e.g. orders-api (letters, digits, . _ -)")
        parser.add_argument("--replace", action="store_true", help="revoke the service's active key, if any")

    def handle(self, *args, **options) -> None:
        name = options["name"]
        if not SERVICE_NAME.fullmatch(name):
            raise CommandError("the service name must be 1 to 100 letters, digits, '.', '_' or '-', starting with "
                               "a letter or digit")
        by = f"cli: {_whoami()}"
        try:
            with transaction.atomic():
                active = list(ServiceCredential.objects.select_for_update().filter(name=name,
                                                                                   revoked_at__isnull=True))
                if active and not options["replace"]:
                    raise CommandError(f"service {name!r} already has an active key ({active[0].prefix}…): "
                                       "use --replace to revoke it and make a new one")
                for credential in active:
                    credential.revoke(by)
                credential, key = ServiceCredential.issue(name, created_by=by)
        except IntegrityError:
            raise CommandError(f"service {name!r} got a key from someone else just now; try again") from None
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable, no key was created: {exc}") from None
        replaced = " (the previous key is revoked)" if active else ""
        self.stderr.write(f"Service key {credential.prefix}… created for {name}{replaced}. "
                          "It is shown now and never again:")
        self.stdout.write(key)
