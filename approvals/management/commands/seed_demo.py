from django.conf import settings
from django.core.management.base import BaseCommand

from approvals.demo import DEMO_USERS, demo_password, demo_seed


class Command(BaseCommand):
    help = "Create the demo tenant, its users of both parties and its deployments (idempotent)."

    def handle(self, *args, **options):
        seed = demo_seed(password=demo_password())
        write = self.stdout.write
        if seed.tenant.offboarded_at is not None:
            write(f"demo tenant '{seed.tenant.slug}' was offboarded; it is kept as it was")
            return
        write(f"demo tenant '{seed.tenant.slug}' ({seed.tenant.name}) is ready")
        if settings.DEBUG:
            write(f"logins (password '{settings.REDLINE_DEMO_PASSWORD}' for each):")
            for username, _, _, party, role in DEMO_USERS:
                write(f"  {username:<20} {party} {role}")
        elif seed.created_users:
            write("users created with random passwords; set them with `manage.py changepassword`")
        if seed.new_tokens:
            write("deployment tokens (shown once; `issue_token <tenant>/<deployment>` adds one):")
            for path, token in seed.new_tokens.items():
                write(f"  {path:<28} {token}")
