"""python manage.py tokenversion_attribute_sync: attribute mode's worker (docs/keycloak.md#attribute-mode).

Writes each pending user version from the outbox into the user's Keycloak attribute, retrying with backoff until
it lands. Run exactly one per provider database, as a service of its own (like ``tokenversion_publisher``); on
PostgreSQL a second one waits on an advisory lock instead of racing the first.
"""

from __future__ import annotations

import signal
import threading
import time
import zlib

from django.core.management.base import BaseCommand, CommandError
from django.db import DatabaseError, connections

from tokenversion.conf import get_settings

from ...attribute_sync import Worker, _using, backlog, run_pass, scan_forever, scan_users
from ...conf import get_server_settings
from ...keycloak_admin import KeycloakUnavailable, admin_client

LOCK_KEY = zlib.crc32(b"tokenversion_attribute_sync")  # the PostgreSQL advisory lock one worker holds


class Command(BaseCommand):
    help = ("Write users' token versions into their Keycloak attribute (attribute mode): drains the outbox, "
            "retrying until each write lands. --status prints the backlog.")

    def add_arguments(self, parser) -> None:
        what = parser.add_mutually_exclusive_group()
        what.add_argument("--status", action="store_true",
                          help="print the backlog (pending writes, failing ones, oldest age, last error) and exit")
        what.add_argument("--once", action="store_true",
                          help="one pass over the due writes, then exit (1 if any is left)")
        what.add_argument("--scan", action="store_true",
                          help="queue a write for every Keycloak user whose attribute is missing or behind, "
                               "then exit")

    def handle(self, *args, **options) -> None:
        issuer = get_settings().issuer
        if not issuer:
            raise CommandError("TOKENVERSION ISSUER is not set: which realm's users would these be?")
        try:
            if options["status"]:
                return self._status()
            conf = get_server_settings()
            if not conf.attribute_sync:
                raise CommandError("TOKENVERSION_SERVER ATTRIBUTE_SYNC is off: bumps are not queued for Keycloak "
                                   "(docs/keycloak.md#attribute-mode)")
            if options["scan"]:
                seen, queued = scan_users(admin_client(), issuer)
                self.stdout.write(f"Scanned {seen} Keycloak user(s): {queued} write(s) queued.")
                return None
            if options["once"]:
                return self._once()
            return self._loop(issuer)
        except KeycloakUnavailable as exc:
            raise CommandError(str(exc)) from None
        except DatabaseError as exc:
            raise CommandError(f"database unavailable: {str(exc).strip().splitlines()[0][:200]}") from None

    def _status(self) -> None:
        b = backlog()
        if not b.pending:
            self.stdout.write("attribute outbox: 0 pending")
            return
        line = f"attribute outbox: {b.pending} pending, {b.failing} failing, oldest {b.oldest_age:.1f} s"
        if b.last_error:
            line += f"; last error: {b.last_error.splitlines()[0][:300]}"
        self.stdout.write(line)

    def _once(self) -> None:
        if not self._try_lock():
            raise CommandError("another tokenversion_attribute_sync holds the lock: it is draining the outbox "
                               "(see --status)")
        try:
            result = run_pass(admin_client())
        finally:
            self._unlock()
        left = backlog().pending
        self.stdout.write(f"{result.written} written, {result.already} already there, {result.gone} user(s) gone, "
                          f"{result.failed} failed; {left} pending.")
        if left:
            raise SystemExit(1)

    def _loop(self, issuer: str) -> None:
        stopping = False

        def stop(signum, frame) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGTERM, stop)
        signal.signal(signal.SIGINT, stop)
        conf = get_server_settings()
        worker = Worker(issuer)
        scanner_stop = threading.Event()
        if conf.attribute_scan_interval:
            threading.Thread(target=scan_forever, args=(issuer, scanner_stop), name="attribute-scan",
                             daemon=True).start()
        self.stdout.write(f"attribute sync: writing {conf.attribute_name!r} for {issuer}", ending="\n")
        self.stdout.flush()
        locked = False
        while not stopping:
            try:
                if not locked:
                    self._single_worker()  # again after a reconnect: the lock went with the old connection
                    locked = True
                result = worker.step()
            except DatabaseError as exc:
                self.stderr.write(f"attribute sync: database unavailable ({type(exc).__name__}); retrying")
                connections[_using()].close()
                locked = False
                time.sleep(1.0)
                continue
            busy = result is not None and (result.done or result.superseded) and not result.failed
            if not busy:
                time.sleep(conf.attribute_sync_interval)
        scanner_stop.set()

    def _try_lock(self) -> bool:
        """PostgreSQL: take the workers' advisory lock if free (released when the process ends)."""
        conn = connections[_using()]
        if conn.vendor != "postgresql":
            return True
        with conn.cursor() as cursor:
            cursor.execute("SELECT pg_try_advisory_lock(%s)", [LOCK_KEY])
            return bool(cursor.fetchone()[0])

    def _unlock(self) -> None:
        conn = connections[_using()]
        if conn.vendor == "postgresql":
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

    def _single_worker(self) -> None:
        """PostgreSQL: hold an advisory lock for the process's life, so two workers never write one user at
        once (each reads then writes: two could otherwise lower a version between them)."""
        if not self._try_lock():
            conn = connections[_using()]
            self.stderr.write("attribute sync: another worker holds the lock; waiting for it to stop")
            with conn.cursor() as cursor:
                cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
