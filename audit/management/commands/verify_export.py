import json
from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from audit.export import BundleProblem, bundle_verify


class Command(BaseCommand):
    help = (
        "Verify an export bundle offline (signatures, digests, the audit chain); exit "
        "non-zero naming the first problem."
    )

    def add_arguments(self, parser):
        parser.add_argument("directory")
        parser.add_argument(
            "--keys",
            metavar="FILE",
            help="signing keys obtained from the vendor beforehand (JWKS, as GET "
            "/api/v1/signing-keys): the manifest must be signed by one of them",
        )

    def handle(self, *args, directory, keys, **options):
        path = Path(directory)
        if not path.is_dir():
            raise CommandError(f"{path} is not a directory")
        trusted = None
        if keys:
            try:
                trusted = json.loads(Path(keys).read_bytes())
            except (OSError, ValueError) as error:
                raise CommandError(f"cannot read the keys in {keys}: {error}") from None
        try:
            result = bundle_verify(path, trusted_keys=trusted)
        except BundleProblem as problem:
            raise CommandError(f"the bundle does not verify: {problem}") from None
        self.stdout.write(
            f"bundle of {result.tenant} verifies: {result.files} files, {result.versions} "
            f"signed versions, {result.change_requests} change requests, {result.events} "
            f"audit events in a chain of {result.chain_head} (keys {', '.join(result.key_ids)})"
        )
