"""The console's offboarding page, for vendor admins: what will happen, a reason, a typed
confirmation, then approvals.offboarding does it and writes the bundle under
REDLINE_EXPORT_DIR."""

import re
from pathlib import Path

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.utils import timezone
from django.views.decorators.http import require_GET, require_http_methods

from approvals.console.access import access_for
from approvals.offboarding import (
    offboard_allowed,
    offboarding_preview,
    tenant_bundle_write,
    tenant_offboard,
)
from audit.export import MANIFEST, bundle_tar_chunks
from config.errors import DomainError

BUNDLE_NAME = re.compile(r"[a-z0-9-]+-\d{8}T\d{6}")


@require_http_methods(["GET", "POST"])
@login_required
def offboard(request, tenant):
    access = access_for(request, tenant)
    context = {"access": access, "bundles": _bundles(access.tenant.slug)}
    if access.tenant.offboarded_at is not None and access.can_view_audit:
        return render(request, "console/offboard.html", context)
    if not offboard_allowed(user=request.user, tenant=access.tenant):
        raise PermissionDenied("only vendor admins may offboard a tenant")
    if access.tenant.offboarded_at is not None:
        return render(request, "console/offboard.html", context)
    context["preview"] = offboarding_preview(access.tenant)
    if request.method == "GET":
        return render(request, "console/offboard.html", context)
    reason = request.POST.get("reason", "").strip()
    if not reason:
        context["error"] = "Give the reason the tenant is offboarded."
        return render(request, "console/offboard.html", context, status=400)
    context["reason"] = reason
    if request.POST.get("confirm", "") != access.tenant.slug:
        context["confirming"] = True
        if "confirm" in request.POST:
            context["error"] = f"Type {access.tenant.slug} exactly to confirm."
        return render(
            request, "console/offboard.html", context, status=400 if "error" in context else 200
        )
    try:
        tenant_offboard(tenant=access.tenant, actor=request.user, reason=reason)
    except DomainError as error:
        context["error"] = str(error)
        return render(request, "console/offboard.html", context, status=error.status_code)
    directory = (
        Path(settings.REDLINE_EXPORT_DIR) / f"{access.tenant.slug}-{timezone.now():%Y%m%dT%H%M%S}"
    )
    summary = tenant_bundle_write(tenant=access.tenant, directory=directory)
    messages.warning(
        request,
        f"{access.tenant.name} is offboarded. Its bundle ({summary.versions} versions, "
        f"{summary.events} audit events) is at {summary.directory}.",
    )
    return redirect("console:offboard", tenant=access.tenant.slug)


@require_GET
@login_required
def offboard_bundle(request, tenant, name):
    """A bundle as a tar file, for whoever may read the tenant's audit log."""
    access = access_for(request, tenant)
    if not access.can_view_audit:
        raise PermissionDenied("your role may not read the audit log")
    if name not in {path.name for path in _bundles(access.tenant.slug)}:
        raise Http404("no such bundle")
    directory = Path(settings.REDLINE_EXPORT_DIR) / name
    response = StreamingHttpResponse(
        bundle_tar_chunks(directory, name=name), content_type="application/x-tar"
    )
    response["Content-Disposition"] = f'attachment; filename="{name}.tar"'
    return response


def _bundles(slug: str) -> list[Path]:
    """The tenant's complete bundles under REDLINE_EXPORT_DIR (named <slug>-<time>)."""
    root = Path(settings.REDLINE_EXPORT_DIR)
    if not root.is_dir():
        return []
    return sorted(
        path
        for path in root.iterdir()
        if BUNDLE_NAME.fullmatch(path.name)
        and path.name.startswith(f"{slug}-")
        and (path / MANIFEST).is_file()
    )
