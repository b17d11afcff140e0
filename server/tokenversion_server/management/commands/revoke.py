"""python manage.py revoke <subject-or-username> --reason ... | --session SID | --all"""

from __future__ import annotations

import getpass

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError

from ... import services

Scope = services.Scope


class Command(BaseCommand):
    help = "Revoke the tokens of a user, of one session, or of the whole realm."

    def add_arguments(self, parser) -> None:
        parser.add_argument("user", nargs="?", help="Keycloak subject, username or email")
        parser.add_argument("--session", metavar="SID", help="revoke one Keycloak session instead")
        parser.add_argument("--all", action="store_true", help="revoke every token of the realm")
        parser.add_argument("--reason", choices=services.Reason.values, default=None,
                            help="why (default: logout for a session, admin otherwise)")
        parser.add_argument("--note", default="", help="free text for the audit trail")
        parser.add_argument("--yes", action="store_true", help="do not ask before --all")

    def handle(self, *args, **options) -> None:
        chosen = [bool(options["user"]), bool(options["session"]), options["all"]]
        if sum(chosen) != 1:
            raise CommandError("give exactly one of: a user, --session SID, --all")
        actor = services.Actor.cli(_whoami())
        note = options["note"]
        scope = Scope.REALM if options["all"] else Scope.SESSION if options["session"] else Scope.USER
        try:
            if scope == Scope.REALM and not options["yes"] and not self._confirm():
                raise CommandError("aborted: nothing was revoked")
            subject = self._known_subject(options["user"]) if scope == Scope.USER else ""
            default_reason = services.Reason.LOGOUT if scope == Scope.SESSION else services.Reason.ADMIN
            rev = services.revoke(services.RevocationRequest(
                scope, actor, options["reason"] or default_reason, subject=subject,
                session_id=options["session"] or "", note=note))
            if scope == Scope.REALM:
                self.stdout.write(f"Revoked every token of {rev.issuer} issued until {rev.at.isoformat()}.")
            elif scope == Scope.SESSION:
                self.stdout.write(f"Revoked session {rev.session_id}.")
                kept = f"Kept until {rev.kept_until.isoformat()}." if rev.kept_until else ""
                line = f"{rev.keycloak_detail} {kept}".strip()
                if rev.keycloak_session == "not_ended":
                    self.stdout.write(self.style.WARNING(line))
                else:
                    self.stdout.write(line)
            else:
                self.stdout.write(f"Revoked every token of {options['user']} ({subject}): "
                                  f"version {rev.old_version} -> {rev.new_version}.")
        except services.InvalidRequest as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"the database is unavailable, nothing was revoked: {exc}") from None

    def _known_subject(self, identifier: str) -> str:
        subject = services.find_subject(identifier)
        if subject is None:
            raise CommandError(
                f"unknown user {identifier!r}: no Keycloak user, or more than one, has that subject, "
                f"username or email"
            )
        return subject

    def _confirm(self) -> bool:
        try:
            answer = input("Revoke every token of the realm? Every user must log in again. [y/N] ")
        except EOFError:
            return False
        return answer.strip().lower() in ("y", "yes")


def _whoami() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "unknown"
