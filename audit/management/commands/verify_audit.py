from django.core.management.base import BaseCommand, CommandError

from audit.services import audit_verify


class Command(BaseCommand):
    help = "Verify the audit hash chain end to end; exit non-zero naming the first bad event."

    def handle(self, *args, **options):
        checked, broken = audit_verify()
        if broken:
            raise CommandError(f"audit chain broken at {broken} ({checked} events read)")
        self.stdout.write(f"audit chain verifies: {checked} events")
