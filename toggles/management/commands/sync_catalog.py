from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from toggles.catalog import CatalogError, catalog_load, catalog_sync


class Command(BaseCommand):
    help = "Load the capability catalog file; refuses any change to a red line."

    def add_arguments(self, parser):
        parser.add_argument("path", nargs="?", default=str(settings.REDLINE_CATALOG_PATH))

    def handle(self, *args, path, **options):
        try:
            result = catalog_sync(catalog_load(path))
        except CatalogError as error:
            raise CommandError(str(error)) from None
        self.stdout.write(
            f"catalog synced: {len(result.added)} added, {len(result.updated)} updated, "
            f"{len(result.unchanged)} unchanged"
        )
