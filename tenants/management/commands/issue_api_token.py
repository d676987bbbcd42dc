from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from knox.models import AuthToken


class Command(BaseCommand):
    help = "Print a new personal API token for a user, once (send it as 'Authorization: Bearer …')."

    def add_arguments(self, parser):
        parser.add_argument("username")

    def handle(self, *args, username, **options):
        user = get_user_model().objects.filter(username=username, is_active=True).first()
        if user is None:
            raise CommandError(f"no active user '{username}'")
        _, token = AuthToken.objects.create(user=user)
        self.stdout.write(token)
