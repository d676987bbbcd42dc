from django.core.management.base import BaseCommand, CommandError

from tenants.selectors import deployment_by_path
from tenants.services import deployment_token_issue


class Command(BaseCommand):
    help = "Issue a new token for a deployment and print it once: issue_token <tenant>/<deployment>"

    def add_arguments(self, parser):
        parser.add_argument("deployment", help="<tenant>/<deployment>, e.g. demo/analyst-unclass")

    def handle(self, *args, deployment, **options):
        found = deployment_by_path(deployment)
        if found is None:
            raise CommandError(
                f"no deployment '{deployment}'; "
                "name it as <tenant>/<deployment>, e.g. demo/analyst-unclass"
            )
        _, plain = deployment_token_issue(deployment=found, actor=None)
        self.stdout.write(plain)
