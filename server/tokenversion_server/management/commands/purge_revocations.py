from django.core.management.base import BaseCommand

from ...enforcement import purge as purge_reports
from ...services import purge_expired


class Command(BaseCommand):
    help = ("Delete session revocations and seen token ids that no live token can need any more, and service "
            "report data past ENFORCEMENT_RETENTION (freshness points, long-gone processes no security event "
            "names).")

    def handle(self, *args, **options) -> None:
        counts = purge_expired()
        self.stdout.write(f"Purged {counts['sessions']} session revocation(s) and "
                          f"{counts['seen_identifiers']} seen identifier(s).")
        reports = purge_reports()
        if reports["points"] or reports["instances"]:  # said only when there was some (the first line is fixed)
            self.stdout.write(f"Purged {reports['points']} freshness point(s) and {reports['instances']} "
                              "service instance(s).")
