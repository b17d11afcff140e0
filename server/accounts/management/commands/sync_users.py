"""python manage.py sync_users: import Keycloak's users into the user database, page by page."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError, OutputWrapper
from django.db import DatabaseError
from keycloak.exceptions import KeycloakError

from tokenversion.conf import get_settings
from tokenversion_server.keycloak_admin import KeycloakUnavailable, admin_client

from ...models import KeycloakUser


class Command(BaseCommand):
    help = "Import the realm's users from Keycloak's admin API into the user database (creates and updates)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--page-size", type=int, default=500, help="users per admin API call (%(default)s)")
        parser.add_argument("--no-progress", action="store_true", help="no progress bar")

    def handle(self, *args, **options) -> None:
        page_size = options["page_size"]
        if not 1 <= page_size <= 5000:
            raise CommandError("--page-size must be between 1 and 5000")
        issuer = get_settings().issuer
        if not issuer:
            raise CommandError("TOKENVERSION ISSUER is not set: which realm's users would these be?")
        try:
            admin = admin_client()
            total = admin.users_count()
        except (KeycloakUnavailable, KeycloakError, OSError) as exc:
            raise CommandError(f"cannot reach Keycloak: {exc}") from None
        progress = Progress(total, None if options["no_progress"] else self.stderr)
        created = updated = seen = 0
        first = 0
        while True:
            try:
                page = admin.get_users({"first": first, "max": page_size, "briefRepresentation": True})
            except (KeycloakError, OSError) as exc:
                raise CommandError(f"Keycloak failed after {seen} users (those are saved): {exc}") from None
            if not page:
                break
            try:
                made, changed = save_page(issuer, page)
            except DatabaseError as exc:
                raise CommandError(f"the database failed after {seen} users (those are saved): {exc}") from None
            created, updated, seen = created + made, updated + changed, seen + len(page)
            progress.show(seen)
            first += len(page)
            if len(page) < page_size:
                break
        progress.done()
        self.stdout.write(f"Synced {seen} Keycloak user(s) of {issuer}: {created} created, {updated} updated, "
                          f"{seen - created - updated} unchanged.")


def save_page(issuer: str, page: list[dict]) -> tuple[int, int]:
    """Create the page's new users and update changed usernames/emails: a read and at most two writes."""
    wanted = {u["id"]: (u.get("username") or "", u.get("email") or "") for u in page if u.get("id")}
    existing = {
        u.subject: u for u in KeycloakUser.objects.filter(issuer=issuer, subject__in=list(wanted))
    }
    new = [KeycloakUser(issuer=issuer, subject=s, username=n[:255], email=e[:255])
           for s, (n, e) in wanted.items() if s not in existing]
    changed = []
    for subject, user in existing.items():
        username, email = wanted[subject]
        if (user.username, user.email) != (username[:255], email[:255]):
            user.username, user.email = username[:255], email[:255]
            changed.append(user)
    KeycloakUser.objects.bulk_create(new, ignore_conflicts=True)
    KeycloakUser.objects.bulk_update(changed, ["username", "email"])
    return len(new), len(changed)


class Progress:
    """A one-line progress bar on a terminal; a line per tenth otherwise (logs stay readable)."""

    def __init__(self, total: int, out: OutputWrapper | None) -> None:
        self.total, self.out = max(total, 0), out
        self.tty = bool(out) and out.isatty()
        self.last_tenth = -1

    def show(self, done: int) -> None:
        if self.out is None:
            return
        fraction = min(done / self.total, 1.0) if self.total else 1.0
        if self.tty:
            bar = "#" * int(fraction * 30)
            self.out.write(f"\r[{bar:<30}] {done}/{self.total} users", ending="")
            self.out.flush()
        elif int(fraction * 10) > self.last_tenth:
            self.last_tenth = int(fraction * 10)
            self.out.write(f"{done}/{self.total} users")

    def done(self) -> None:
        if self.out is not None and self.tty:
            self.out.write("")



