from pathlib import Path

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from approvals.offboarding import tenant_bundle_write, tenant_offboard
from config.errors import DomainError
from tenants.models import Tenant


class Command(BaseCommand):
    help = (
        "Offboard a tenant: revoke its deployment tokens, withdraw its pending requests, roll "
        "out a final version at the safest values, and write its export bundle to DIR. "
        "For a tenant offboarded before, only the bundle is written."
    )

    def add_arguments(self, parser):
        parser.add_argument("tenant", help="the tenant's slug")
        parser.add_argument("--export", required=True, metavar="DIR", help="new, empty directory")
        parser.add_argument("--reason", required=True, help="why the tenant is offboarded")
        parser.add_argument(
            "--actor", help="username of the vendor admin on whose behalf this runs"
        )

    def handle(self, *args, tenant, export, reason, actor, **options):
        found = Tenant.objects.filter(slug=tenant).first()
        if found is None:
            raise CommandError(f"no tenant '{tenant}'")
        directory = Path(export)
        if directory.exists() and any(directory.iterdir()):
            raise CommandError(f"{directory} is not empty; choose a new directory")
        if found.offboarded_at is None:
            who = self._actor(actor)
            try:
                done = tenant_offboard(tenant=found, actor=who, reason=reason)
            except DomainError as error:
                raise CommandError(str(error)) from None
            self.stdout.write(
                f"{tenant} offboarded: {len(done.revoked_tokens)} tokens revoked, "
                f"{len(done.withdrawn)} pending requests withdrawn, "
                f"{len(done.made_stale)} approved requests made stale, final versions "
                + (", ".join(f"{name} v{n}" for name, n in done.versions.items()) or "none")
                + (
                    f" (already at the safest values: {', '.join(done.unchanged)})"
                    if done.unchanged
                    else ""
                )
            )
        else:
            self.stdout.write(
                f"{tenant} was offboarded on {found.offboarded_at:%Y-%m-%d %H:%M} UTC; "
                "writing its bundle again"
            )
        summary = tenant_bundle_write(tenant=found, directory=directory)
        self.stdout.write(
            f"bundle written to {summary.directory}: {summary.versions} versions, "
            f"{summary.change_requests} change requests, {summary.events} audit events "
            f"(chain head #{summary.chain_head}); check it with `manage.py verify_export "
            f"{summary.directory}`"
        )

    def _actor(self, username: str | None):
        if not username:
            return "command:offboard_tenant"
        user = get_user_model().objects.filter(username=username).first()
        if user is None:
            raise CommandError(f"no user '{username}'")
        return user
