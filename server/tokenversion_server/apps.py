from django.apps import AppConfig


class TokenVersionServerConfig(AppConfig):
    name = "tokenversion_server"
    label = "tokenversion_server"
    verbose_name = "Token revocation"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        """Register the system checks and connect every signal receiver of the app, here and only here.

        Connected at import time, a receiver would exist only once its module happened to be imported (the feed's
        long-poll wake-up only after the URLconf loaded), and twice under two import paths. Each has a
        ``dispatch_uid``, so a second ``ready()`` (a test runner re-populating the registry) connects nothing new.
        """
        from . import checks, dev_secrets  # noqa: F401  (register the provider's system checks)
        from .fanout import wake_streams
        from .feed import wake_long_polls
        from .publish import publish_committed
        from .signals import revocation_committed

        # Redis fast path: publish committed revocations when REDIS_URL is set (a no-op otherwise).
        revocation_committed.connect(publish_committed, dispatch_uid="tokenversion_server.publish.fast_path")
        # HTTP feed: wake this process's long-polls and server-sent-event streams now, not at their next tick.
        revocation_committed.connect(wake_long_polls, dispatch_uid="tokenversion_server.feed.poke")
        revocation_committed.connect(wake_streams, dispatch_uid="tokenversion_server.fanout.poke")
