from django.core.management.base import BaseCommand

from ...services import purge_expired


class Command(BaseCommand):
    help = "Delete session revocations and seen token ids that no live token can need any more."

    def handle(self, *args, **options) -> None:
        counts = purge_expired()
        self.stdout.write(f"Purged {counts['sessions']} session revocation(s) and "
                          f"{counts['seen_identifiers']} seen identifier(s).")
