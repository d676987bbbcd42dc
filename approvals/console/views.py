"""The web console. Views are thin: they read through selectors, write through services,
and show domain errors with their status. Every action is checked again on the server."""

import json
from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from approvals.console.access import Access, access_for
from approvals.console.forms import FormValueError, changed_values, field_name
from approvals.models import ChangeRequest, Channel, RequestKind, RequestStatus, Verdict
from approvals.policy import POLICY_KEYS, TIERS, policy_values
from approvals.quorum import PARTIES
from approvals.rollback import rollback_request_submit
from approvals.selectors import (
    change_preview,
    change_request_progress,
    change_requests_for,
    config_by_category,
    version_diff,
    version_provenance,
    versions_of,
)
from approvals.services import (
    brake_pull,
    change_request_decide,
    change_request_submit,
    change_request_withdraw,
    quorum_policy_for,
)
from audit.models import AuditEvent
from audit.services import audit_verify
from config.errors import DomainError, ValidationFailed
from tenants.models import Deployment, DeploymentToken
from tenants.selectors import tenants_visible_to
from tenants.services import (
    deployment_token_issue,
    deployment_token_revoke,
    deployment_webhook_set,
)
from toggles.effective import effective_values
from toggles.models import (
    Capability,
    Profile,
    ProfileVersion,
    Rollout,
    RolloutStatus,
    TargetStatus,
)
from toggles.ping import webhook_ping
from toggles.rollout import rollout_progress, rollout_resume, rollouts_with_counts
from toggles.values import safest_value


def _page(request, template: str, access: Access | None, status: int = 200, **context):
    return render(request, template, {"access": access, **context}, status=status)


def _refused(request, access: Access | None, error: DomainError) -> HttpResponse:
    return _page(request, "console/refused.html", access, status=error.status_code, error=error)


def _profile(access: Access, request) -> Profile:
    name = request.GET.get("profile") or request.POST.get("profile") or "default"
    return get_object_or_404(
        Profile.objects.select_related("tenant"), tenant=access.tenant, name=name
    )


def _current_values(profile: Profile) -> dict:
    version = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
    return effective_values([c.spec() for c in Capability.objects.all()], version.values)


@require_GET
@login_required
def home(request):
    return render(request, "console/home.html", {"tenants": tenants_visible_to(request.user)})


@require_GET
@login_required
def overview(request, tenant):
    access = access_for(request, tenant)
    profile = _profile(access, request)
    version = ProfileVersion.objects.select_related("created_by").get(
        profile=profile, number=profile.current_version
    )
    pending = change_requests_for(tenant=access.tenant, filters={"status": RequestStatus.PENDING})
    latest = Rollout.objects.filter(profile=profile).select_related("version").first()
    return _page(
        request,
        "console/overview.html",
        access,
        profile=profile,
        profiles=Profile.objects.filter(tenant=access.tenant),
        groups=config_by_category(profile),
        version=version,
        provenance=version_provenance(version),
        pending=[(cr, change_request_progress(cr)) for cr in pending[:20]],
        latest_rollout=_rollout_context(latest) if latest else None,
    )


@require_http_methods(["GET", "POST"])
@login_required
def propose(request, tenant):
    access = access_for(request, tenant)
    access.require(access.can_propose, "your role may not propose changes")
    profile = _profile(access, request)
    capabilities = list(Capability.objects.all())
    current = _current_values(profile)
    context = {
        "profile": profile,
        "groups": config_by_category(profile),
        "field_name": field_name,
        "current": current,
    }
    if request.method == "POST":
        try:
            changes = changed_values(request.POST, capabilities, current)
            hours = request.POST.get("time_box_hours", "").strip()
            cr = change_request_submit(
                tenant=access.tenant,
                profile=profile,
                actor=request.user,
                changes=changes,
                justification=request.POST.get("justification", ""),
                base_version=int(request.POST.get("base_version", "0")),
                time_box=_hours(hours),
            )
        except FormValueError as error:
            return _page(
                request,
                "console/propose.html",
                access,
                status=400,
                error=str(error),
                form=request.POST,
                **context,
            )
        except DomainError as error:
            return _page(
                request,
                "console/propose.html",
                access,
                status=error.status_code,
                error=str(error),
                form=request.POST,
                **context,
            )
        messages.success(request, f"Change request #{cr.pk} submitted.")
        return redirect("console:request", tenant=access.tenant.slug, pk=cr.pk)
    return _page(request, "console/propose.html", access, form={}, **context)


def _hours(raw: str) -> timedelta | None:
    if not raw:
        return None
    try:
        return timedelta(hours=float(raw))
    except ValueError:
        raise ValidationFailed("the time box is a number of hours, e.g. 24") from None


@require_POST
@login_required
def propose_preview(request, tenant):
    """The live diff: each change classed, and the quorum it will need (htmx partial)."""
    access = access_for(request, tenant)
    profile = _profile(access, request)
    try:
        changes = changed_values(
            request.POST, list(Capability.objects.all()), _current_values(profile)
        )
        preview = (
            change_preview(tenant=access.tenant, profile=profile, changes=changes)
            if (changes)
            else None
        )
    except (FormValueError, DomainError) as error:
        return render(request, "console/_preview.html", {"error": str(error)})
    return render(request, "console/_preview.html", {"preview": preview})


@require_GET
@login_required
def request_list(request, tenant):
    access = access_for(request, tenant)
    filters = {key: request.GET.get(key, "") for key in ("status", "kind", "requester")}
    requests = change_requests_for(tenant=access.tenant, filters=filters)[:200]
    return _page(
        request,
        "console/requests.html",
        access,
        filters=filters,
        rows=[(cr, change_request_progress(cr)) for cr in requests],
        statuses=RequestStatus.choices,
        kinds=RequestKind.choices,
    )


def _request_context(access: Access, cr: ChangeRequest, user) -> dict:
    decided = cr.decisions.filter(reviewer=user).exists()
    pending = cr.status == RequestStatus.PENDING
    return {
        "cr": cr,
        "progress": change_request_progress(cr),
        "decisions": cr.decisions.select_related("reviewer"),
        "is_requester": cr.requester_id == user.pk,
        "can_decide": pending and access.can_review and cr.requester_id != user.pk and not decided,
        "already_decided": decided,
        "can_withdraw": pending and cr.requester_id == user.pk,
        "rows": [
            {
                "key": key,
                "old": cr.previous.get(key),
                "new": value,
                "direction": cr.directions.get(key),
            }
            for key, value in cr.changes.items()
        ],
    }


@require_GET
@login_required
def request_detail(request, tenant, pk):
    access = access_for(request, tenant)
    cr = get_object_or_404(
        ChangeRequest.objects.select_related("requester", "profile"), tenant=access.tenant, pk=pk
    )
    return _page(
        request, "console/request.html", access, **_request_context(access, cr, request.user)
    )


@require_POST
@login_required
def request_decide(request, tenant, pk):
    access = access_for(request, tenant)
    cr = get_object_or_404(ChangeRequest, tenant=access.tenant, pk=pk)
    verdict = request.POST.get("verdict", "")
    try:
        change_request_decide(
            change_request_id=cr.pk,
            actor=request.user,
            verdict=verdict,
            channel=Channel.CONSOLE,
            comment=request.POST.get("comment", ""),
            seen_digest=request.POST.get("digest") or None,
        )
    except DomainError as error:
        return _refused(request, access, error)
    word = "approved" if verdict == Verdict.APPROVE else "rejected"
    messages.success(request, f"You {word} change request #{cr.pk}.")
    return redirect("console:request", tenant=access.tenant.slug, pk=cr.pk)


@require_POST
@login_required
def request_withdraw(request, tenant, pk):
    access = access_for(request, tenant)
    cr = get_object_or_404(ChangeRequest, tenant=access.tenant, pk=pk)
    try:
        change_request_withdraw(
            change_request_id=cr.pk, actor=request.user, reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        return _refused(request, access, error)
    messages.success(request, f"Change request #{cr.pk} withdrawn.")
    return redirect("console:request", tenant=access.tenant.slug, pk=cr.pk)


def _brakeable(profile: Profile) -> list[dict]:
    current = _current_values(profile)
    rows = []
    for capability in Capability.objects.filter(is_red_line=False):
        safe = safest_value(capability.spec())
        if safe is not None:
            rows.append(
                {
                    "capability": capability,
                    "current": current[capability.key],
                    "safest": safe,
                    "at_safest": current[capability.key] == safe,
                }
            )
    return rows


@require_http_methods(["GET", "POST"])
@login_required
def brake(request, tenant):
    """Two steps: choose and give a reason, then confirm what will change."""
    access = access_for(request, tenant)
    access.require(access.can_brake, "only admins and reviewers may pull the brake")
    profile = _profile(access, request)
    rows = _brakeable(profile)
    if request.method == "GET":
        return _page(request, "console/brake.html", access, profile=profile, rows=rows)
    everything = request.POST.get("scope") == "all"
    keys = None if everything else request.POST.getlist("capability")
    reason = request.POST.get("reason", "").strip()
    if not reason or (not everything and not keys):
        return _page(
            request,
            "console/brake.html",
            access,
            status=400,
            profile=profile,
            rows=rows,
            error="Choose capabilities (or all) and give a reason.",
        )
    if request.POST.get("confirmed") != "yes":
        chosen = [r for r in rows if everything or r["capability"].key in keys]
        return _page(
            request,
            "console/brake_confirm.html",
            access,
            profile=profile,
            chosen=chosen,
            keys=keys or [],
            everything=everything,
            reason=reason,
        )
    try:
        result = brake_pull(
            tenant=access.tenant, actor=request.user, reason=reason, keys=keys, profiles=[profile]
        )
    except DomainError as error:
        return _refused(request, access, error)
    if result.versions:
        messages.warning(
            request,
            f"Emergency brake applied: {profile.name} is now at version "
            f"{result.versions[profile.name]}.",
        )
    else:
        messages.info(request, "Everything chosen was already at its safest value.")
    return redirect(reverse("console:overview", args=[access.tenant.slug]))


@require_GET
@login_required
def versions(request, tenant):
    access = access_for(request, tenant)
    profile = _profile(access, request)
    history = list(versions_of(profile))
    diff, pair = None, None
    raw_from, raw_to = request.GET.get("from", ""), request.GET.get("to", "")
    if raw_from.isdigit() and raw_to.isdigit():
        numbers = {v.number for v in history}
        pair = (int(raw_from), int(raw_to))
        if not set(pair) <= numbers:
            raise Http404("no such version")
        diff = version_diff(profile=profile, from_number=pair[0], to_number=pair[1])
    return _page(
        request,
        "console/versions.html",
        access,
        profile=profile,
        history=history,
        diff=diff,
        pair=pair,
    )


@require_http_methods(["GET", "POST"])
@login_required
def policy(request, tenant):
    access = access_for(request, tenant)
    current = quorum_policy_for(access.tenant)
    values = policy_values(current)
    context = {"policy": current, "values": values, "tiers": TIERS, "parties": PARTIES}
    if request.method == "GET":
        return _page(request, "console/policy.html", access, **context)
    access.require(access.can_propose, "your role may not propose changes")
    try:
        changes = _policy_changes(request.POST, values)
        cr = change_request_submit(
            tenant=access.tenant,
            profile=None,
            actor=request.user,
            changes=changes,
            justification=request.POST.get("justification", ""),
            base_version=int(request.POST.get("base_version", "0")),
        )
    except DomainError as error:
        return _page(
            request,
            "console/policy.html",
            access,
            status=error.status_code,
            error=str(error),
            **context,
        )
    messages.success(request, f"Policy change request #{cr.pk} submitted.")
    return redirect("console:request", tenant=access.tenant.slug, pk=cr.pk)


def _policy_changes(data, current: dict) -> dict[str, int]:
    """The policy fields whose submitted number differs from the current policy."""
    changes = {}
    for key in POLICY_KEYS:
        raw = data.get(key, "").strip()
        if not raw:
            continue
        try:
            value = int(raw)
        except ValueError:
            raise ValidationFailed(f"'{key}' takes a whole number") from None
        if value != current[key]:
            changes[key] = value
    return changes


@require_GET
@login_required
def deployments(request, tenant):
    access = access_for(request, tenant)
    rows = Deployment.objects.filter(tenant=access.tenant).prefetch_related("tokens")
    return _page(request, "console/deployments.html", access, deployments=rows)


def _managed_deployment(request, tenant, slug) -> tuple[Access, Deployment]:
    access = access_for(request, tenant)
    access.require(access.can_manage_deployments, "your role may not manage deployments")
    return access, get_object_or_404(Deployment, tenant=access.tenant, slug=slug)


@require_POST
@login_required
def token_issue(request, tenant, slug):
    access, deployment = _managed_deployment(request, tenant, slug)
    token, plain = deployment_token_issue(deployment=deployment, actor=request.user)
    response = _page(
        request,
        "console/token_issued.html",
        access,
        deployment=deployment,
        token=token,
        plain=plain,
    )
    response["Cache-Control"] = "no-store"
    return response


@require_POST
@login_required
def token_revoke(request, tenant, slug, token_id):
    access, deployment = _managed_deployment(request, tenant, slug)
    token = get_object_or_404(DeploymentToken, deployment=deployment, pk=token_id)
    deployment_token_revoke(token=token, actor=request.user)
    messages.success(request, f"Token {token.prefix}… of {deployment.slug} revoked.")
    return redirect("console:deployments", tenant=access.tenant.slug)


@require_GET
@login_required
def audit_log(request, tenant):
    access = access_for(request, tenant)
    if not access.can_view_audit:
        raise PermissionDenied("your role may not read the audit log")
    filters = {key: request.GET.get(key, "").strip() for key in ("action", "actor")}
    events = _audit_events(access, filters)
    checked, broken = audit_verify()
    return _page(
        request,
        "console/audit.html",
        access,
        events=events.order_by("-sequence")[:200],
        filters=filters,
        checked=checked,
        broken=broken,
    )


def _audit_events(access: Access, filters: dict):
    events = AuditEvent.objects.filter(tenant=access.tenant.slug)
    if filters.get("action"):
        events = events.filter(action__startswith=filters["action"])
    if filters.get("actor"):
        events = events.filter(actor__icontains=filters["actor"])
    return events


@require_GET
@login_required
def audit_export(request, tenant):
    """The tenant's events as JSON Lines, streamed so any size runs in constant memory."""
    access = access_for(request, tenant)
    if not access.can_view_audit:
        raise PermissionDenied("your role may not read the audit log")
    events = _audit_events(access, {k: request.GET.get(k, "") for k in ("action", "actor")})

    def lines():
        for event in events.order_by("sequence").iterator(chunk_size=2000):
            yield (
                json.dumps(
                    {
                        "sequence": event.sequence,
                        "created_at": event.created_at.isoformat(),
                        "actor": event.actor,
                        "tenant": event.tenant,
                        "action": event.action,
                        "target": event.target,
                        "data": event.data,
                        "prev_hash": event.prev_hash,
                        "hash": event.hash,
                    },
                    sort_keys=True,
                )
                + "\n"
            )

    response = StreamingHttpResponse(lines(), content_type="application/x-ndjson")
    response["Content-Disposition"] = f'attachment; filename="{access.tenant.slug}-audit.jsonl"'
    return response


def _rollout_in(access: Access, pk: int) -> Rollout:
    return get_object_or_404(
        Rollout.objects.select_related("profile", "version"), profile__tenant=access.tenant, pk=pk
    )


def _rollout_context(rollout: Rollout) -> dict:
    progress = rollout_progress(rollout)
    delivered = progress["by_status"][TargetStatus.DELIVERED]
    counted = progress["total"] - progress["by_status"][TargetStatus.SUPERSEDED]
    return {
        "rollout": rollout,
        "progress": progress,
        "percent": round(100 * delivered / counted) if counted else 100,
        "targets": rollout.targets.select_related("deployment").order_by(
            "wave", "deployment__slug"
        ),
        "live": rollout.status in (RolloutStatus.PENDING, RolloutStatus.ACTIVE),
    }


@require_GET
@login_required
def rollouts(request, tenant):
    access = access_for(request, tenant)
    rows = rollouts_with_counts(Rollout.objects.filter(profile__tenant=access.tenant))[:50]
    return _page(request, "console/rollouts.html", access, rollouts=rows)


@require_GET
@login_required
def rollout_detail(request, tenant, pk):
    access = access_for(request, tenant)
    rollout = _rollout_in(access, pk)
    template = "console/_rollout_progress.html" if request.htmx else "console/rollout.html"
    return _page(request, template, access, **_rollout_context(rollout))


@require_POST
@login_required
def rollout_resume_view(request, tenant, pk):
    access = access_for(request, tenant)
    rollout = _rollout_in(access, pk)
    try:
        rollout_resume(
            rollout_id=rollout.pk, actor=request.user, reason=request.POST.get("reason", "")
        )
    except DomainError as error:
        return _refused(request, access, error)
    messages.success(request, f"Rollout of version {rollout.version.number} resumed.")
    return redirect("console:rollout", tenant=access.tenant.slug, pk=rollout.pk)


@require_POST
@login_required
def rollout_rollback(request, tenant, pk):
    """Roll back by proposing the earlier version's values: a change request like any other."""
    access = access_for(request, tenant)
    rollout = _rollout_in(access, pk)
    raw = request.POST.get("to_version", "")
    try:
        if not raw.isdigit():
            raise ValidationFailed("choose the version to roll back to")
        cr = rollback_request_submit(
            profile=rollout.profile,
            to_version=int(raw),
            actor=request.user,
            justification=request.POST.get("justification", ""),
        )
    except DomainError as error:
        return _refused(request, access, error)
    messages.success(request, f"Rollback proposed as change request #{cr.pk}.")
    return redirect("console:request", tenant=access.tenant.slug, pk=cr.pk)


@require_POST
@login_required
def webhook_set(request, tenant, slug):
    access, deployment = _managed_deployment(request, tenant, slug)
    try:
        deployment_webhook_set(
            deployment=deployment,
            webhook_url=request.POST.get("webhook_url", ""),
            actor=request.user,
        )
    except DomainError as error:
        return _refused(request, access, error)
    messages.success(request, f"Webhook of {deployment.slug} saved.")
    return redirect("console:deployments", tenant=access.tenant.slug)


@require_POST
@login_required
def webhook_test(request, tenant, slug):
    access, deployment = _managed_deployment(request, tenant, slug)
    if not deployment.webhook_url:
        return _refused(
            request, access, ValidationFailed(f"{deployment.slug} has no webhook to ping")
        )
    result = webhook_ping(deployment=deployment)
    if result.outcome == "delivered":
        messages.success(request, f"Ping to {deployment.slug} answered: {result.detail}")
    else:
        messages.error(request, f"Ping to {deployment.slug} failed: {result.detail}")
    return redirect("console:deployments", tenant=access.tenant.slug)
