"""``manage.py tokenversion_publisher``: the certifying Redis publisher (see ``tokenversion_server.publish``).

Run one (or, for redundancy, a few) next to the provider, with the provider's settings. Without it, services
using ``RedisStore`` get revocations by the fast path but can never prove they are fresh, so they answer 503
(or poll the HTTP feed, if allowed).
"""

from __future__ import annotations

import signal
import threading

from django.core.exceptions import ImproperlyConfigured
from django.core.management.base import BaseCommand, CommandError

from tokenversion.conf import get_settings

from ...conf import get_server_settings
from ...feed import feed_using
from ...publish import Publisher, feed_signer, redis_client


class Command(BaseCommand):
    help = "Publish revocations and heartbeats on Redis for the services' RedisStore (runs until stopped)."

    def add_arguments(self, parser) -> None:
        parser.add_argument("--interval", type=float, default=None,
                            help="seconds between heartbeats (default: TOKENVERSION_SERVER['PUBLISH_INTERVAL'])")

    def handle(self, *args, **options) -> None:
        conf, server = get_settings(), get_server_settings()
        if not server.redis_url:
            raise CommandError("TOKENVERSION_SERVER['REDIS_URL'] is not set")
        try:
            signer = feed_signer()
        except ImproperlyConfigured as exc:
            raise CommandError(str(exc)) from None
        if not conf.issuer:
            raise CommandError("TOKENVERSION['ISSUER'] is not set: messages name the issuer they are for")
        interval = options["interval"] if options["interval"] is not None else server.publish_interval
        if not 0 < interval <= 60:
            raise CommandError("--interval must be between 0 and 60 seconds")
        stop = threading.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, lambda *_: stop.set())
        publisher = Publisher(redis_client(server.redis_url), server.redis_channel, signer, conf.issuer, feed_using(),
                              interval, server.feed_page_size)
        self.stdout.write(f"publishing on {server.redis_channel!r} every {interval:g} s, signed with key "
                          f"{signer.kid}", ending="\n")
        self.stdout.flush()
        publisher.serve(stop)
        self.stdout.write(f"stopped: {publisher.stats}")
