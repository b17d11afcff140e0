"""python manage.py keycloak_setup: configure a Keycloak realm for tokenversion, idempotently."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from tokenversion.conf import get_settings

from ...conf import get_server_settings
from ...keycloak_admin import KeycloakUnavailable, RealmSetup, RealmSpec, admin_client, admin_settings


class Command(BaseCommand):
    help = (
        "Configure a Keycloak realm for tokenversion: the version and audience mappers (in a client scope), "
        "back-channel logout on the login clients, the audience client and the event listener. "
        "Changes only what differs; a second run reports no change."
    )

    def add_arguments(self, parser) -> None:
        conf, server = get_settings(), get_server_settings()
        parser.add_argument("--provider-url", default="http://127.0.0.1:8000",
                            help="base URL at which Keycloak reaches this provider (default: %(default)s)")
        parser.add_argument("--client", action="append", dest="clients", metavar="CLIENT_ID",
                            help="a client users log in through (repeatable; default: TOKENVERSION_SERVER "
                                 f"BACKCHANNEL_AUDIENCE = {', '.join(server.backchannel_audience)})")
        parser.add_argument("--audience", default=conf.audience[0] if conf.audience else None,
                            help="the APIs' audience put into access tokens (default: first of AUDIENCE, "
                                 "%(default)s)")
        parser.add_argument("--failure-policy", choices=["omit_claim", "fail"], default="omit_claim",
                            help="what the mapper does when the provider cannot answer and it has no "
                                 "remembered version (default: %(default)s)")
        parser.add_argument("--mapper-mode", choices=["cached", "direct"], default="cached",
                            help="cached: the mapper answers from a per-node map fed by this provider's feed (needs "
                                 "TOKENVERSION_SERVER FEED_SECRETS), no call at token issue; direct: one claims call "
                                 "per token request (default: %(default)s)")
        parser.add_argument("--max-staleness-ms", type=int, default=2000,
                            help="cached mode: how old the map's proof of freshness may be before the mapper asks "
                                 "the claims endpoint, 200 to 600000 (default: %(default)s)")
        parser.add_argument("--create-realm", action="store_true", help="create the realm when it is missing")
        parser.add_argument("--direct-access-grants", action="store_true",
                            help="allow the password grant on the login clients (tests and demos only)")
        parser.add_argument("--redirect-uri", action="append", dest="redirect_uris", default=[],
                            help="redirect URI for login clients this command creates (repeatable)")
        parser.add_argument("--dry-run", action="store_true", help="print what would change, change nothing")
        add_attribute_mode_arguments(parser)

    def handle(self, *args, **options) -> None:
        conf, server = get_settings(), get_server_settings()
        clients = tuple(options["clients"] or server.backchannel_audience)
        if not clients:
            raise CommandError("no login client: pass --client or set TOKENVERSION_SERVER BACKCHANNEL_AUDIENCE")
        missing = [c for c in clients if c not in server.backchannel_audience]
        if missing:
            # Logout tokens name the client in aud: the receiver would refuse them all.
            raise CommandError(
                f"client(s) {', '.join(missing)} are not in TOKENVERSION_SERVER BACKCHANNEL_AUDIENCE "
                f"({', '.join(server.backchannel_audience) or 'empty'}): their back-channel logouts would be refused"
            )
        if not options["audience"]:
            raise CommandError("no audience: pass --audience or set TOKENVERSION AUDIENCE")
        attribute_mode = options["attribute_mode"]
        if attribute_mode:
            check_attribute_mode(server)
        elif not server.mapper_secrets:
            raise CommandError("TOKENVERSION_SERVER MAPPER_SECRETS is empty: the mapper would have no secret to send")
        if not attribute_mode and options["mapper_mode"] == "cached" and not server.feed_secrets:
            raise CommandError("TOKENVERSION_SERVER FEED_SECRETS is empty: the cached mapper mode reads the feed; "
                               "set a feed secret or pass --mapper-mode direct")
        if not 200 <= options["max_staleness_ms"] <= 600_000:
            raise CommandError("--max-staleness-ms must be from 200 to 600000")
        provider_url = options["provider_url"]
        if not provider_url.startswith(("http://", "https://")):
            raise CommandError(f"--provider-url must be an http(s) URL, not {provider_url!r}")
        try:
            kc = admin_settings()
            spec = RealmSpec(
                realm=kc.realm,
                login_clients=clients,
                audience=options["audience"],
                provider_url=provider_url,
                mapper_secret=server.mapper_secrets[0] if server.mapper_secrets else "",
                failure_policy=options["failure_policy"],
                claim=conf.claim,
                create_realm=options["create_realm"],
                direct_access_grants=options["direct_access_grants"],
                redirect_uris=tuple(options["redirect_uris"]),
                attribute_mode=attribute_mode,
                attribute_name=server.attribute_name,
                mapper_mode=options["mapper_mode"],
                feed_secret=server.feed_secrets[0] if server.feed_secrets else "",
                max_staleness_ms=options["max_staleness_ms"],
            )
            admin = admin_client(kc)
            changes = RealmSetup(admin, spec, dry_run=options["dry_run"]).run()
            if attribute_mode:
                changes += backfill_attributes(admin, conf.issuer, options["dry_run"])
        except KeycloakUnavailable as exc:
            raise CommandError(str(exc)) from None
        verb = "would change" if options["dry_run"] else "changed"
        for change in changes:
            self.stdout.write(f"  {verb}: {change}")
        if changes:
            self.stdout.write(f"{len(changes)} change(s) {'planned' if options['dry_run'] else 'made'} "
                              f"in realm {spec.realm} at {kc.server_url}.")
        else:
            self.stdout.write(f"No change: realm {spec.realm} is already configured for tokenversion.")


# Attribute mode (docs/keycloak.md#attribute-mode) -------------------------------------------------------------


def add_attribute_mode_arguments(parser) -> None:
    parser.add_argument("--attribute-mode", action="store_true",
                        help="attribute mode: Keycloak's own User Attribute mapper carries the version the provider "
                             "writes into each user (no call to the provider at token issue; needs "
                             "TOKENVERSION_SERVER ATTRIBUTE_SYNC and the tokenversion_attribute_sync worker). "
                             "Without it, the extension's mapper is (re)configured and the attribute mapper removed")


def check_attribute_mode(server) -> None:
    if not server.attribute_sync:
        raise CommandError("--attribute-mode needs TOKENVERSION_SERVER ATTRIBUTE_SYNC on: otherwise bumps would "
                           "never reach the attribute, and tokens would keep the old version")


def backfill_attributes(admin, issuer: str, dry_run: bool) -> list[str]:
    """Queue the current version of every Keycloak user whose attribute is missing or behind (the worker writes
    them): existing users keep getting a claim once the extension's mapper is gone."""
    from ...attribute_sync import scan_users

    seen, queued = scan_users(admin, issuer, dry_run=dry_run)
    if not queued:
        return []
    return [f"queue the version of {queued} of {seen} user(s) for their attribute (tokenversion_attribute_sync "
            f"writes them)"]
