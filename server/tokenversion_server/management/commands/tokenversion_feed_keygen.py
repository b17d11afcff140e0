"""``manage.py tokenversion_feed_keygen``: an Ed25519 key pair for the signed Redis feed (docs/scaling.md).

The private key goes to the provider and the certifying publisher only (``FEED_SIGNING_KEY``); the public value
goes into each service's ``STORE_OPTIONS["verify_keys"]``. A service given the public key can verify messages,
never sign one.

    manage.py tokenversion_feed_keygen --out /etc/tokenversion/feed-signing.pem   # 0600, never overwritten
    manage.py tokenversion_feed_keygen                                             # private PEM on stdout
    manage.py tokenversion_feed_keygen --public-of /etc/tokenversion/feed-signing.pem
"""

from __future__ import annotations

import os

from django.core.management.base import BaseCommand, CommandError

from tokenversion.core.feed_protocol import FeedKeyError, FeedSigner, generate_signing_key, public_value


class Command(BaseCommand):
    help = ("Generate the Ed25519 key pair that signs Redis messages: the private key for the provider and the "
            "publisher (FEED_SIGNING_KEY), the public value for the services (verify_keys).")
    # Runs before the key exists: the check that asks for it (tokenversion.E010) must not stop it.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser) -> None:
        parser.add_argument("--out", metavar="FILE",
                            help="write the private key to FILE (created with mode 0600; an existing file is "
                                 "never overwritten) instead of printing it")
        parser.add_argument("--public-of", metavar="FILE",
                            help="print the public value and key id of an existing private key file, and exit")

    def handle(self, *args, **options) -> None:
        if options["public_of"]:
            if options["out"]:
                raise CommandError("--public-of and --out cannot be combined")
            self._print_public(self._read(options["public_of"]))
            return
        pem, _ = generate_signing_key()
        if options["out"]:
            self._write(options["out"], pem)
            self.stdout.write(f"private key written to {options['out']} (mode 0600): set "
                              f"TOKENVERSION_FEED_SIGNING_KEY_FILE to it on the provider and the publisher only")
        else:
            self.stdout.write(pem, ending="")
        self._print_public(FeedSigner.from_pem(pem))

    def _print_public(self, signer: FeedSigner) -> None:
        self.stdout.write(f"key id: {signer.kid}")
        self.stdout.write("public key, for the services' STORE_OPTIONS['verify_keys']:")
        self.stdout.write(public_value(signer.public_key))

    @staticmethod
    def _read(path: str) -> FeedSigner:
        try:
            with open(path, encoding="ascii") as handle:
                return FeedSigner.from_pem(handle.read(64 * 1024))
        except (OSError, UnicodeDecodeError) as exc:
            raise CommandError(f"cannot read {path}: {exc.strerror if isinstance(exc, OSError) else exc}") from None
        except FeedKeyError as exc:
            raise CommandError(f"{path}: {exc}") from None

    @staticmethod
    def _write(path: str, pem: str) -> None:
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            raise CommandError(f"{path} exists: not overwritten (a key in use would be lost)") from None
        except OSError as exc:
            raise CommandError(f"cannot create {path}: {exc.strerror}") from None
        with os.fdopen(fd, "w", encoding="ascii") as handle:
            handle.write(pem)
