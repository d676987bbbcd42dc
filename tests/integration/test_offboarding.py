"""Offboarding: tokens revoked, requests closed, a final version at the safest values, the
tenant read-only after, and an export bundle that verifies offline and fails on any change."""

import hashlib
import json
import threading
from datetime import timedelta
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import CommandError, call_command
from django.db import connection, transaction
from rest_framework.test import APIClient

from approvals.models import ChangeRequest, Channel, RequestStatus
from approvals.offboarding import tenant_bundle_write, tenant_offboard
from approvals.services import brake_pull, change_request_decide, change_request_submit
from audit import export
from audit.models import AuditEvent
from audit.services import audit_verify
from tenants.models import Deployment, DeploymentToken, Party, Role, Tenant
from tenants.services import (
    TenantOffboarded,
    deployment_create,
    deployment_token_issue,
    membership_remove,
    membership_set,
)
from toggles.effective import effective_values
from toggles.models import Capability, Profile, ProfileVersion, VersionKind
from toggles.signing import keyring
from toggles.values import safest_value

User = get_user_model()
LOOSEN = {"intel.foreign_analysis": "full"}
REASON = "contract ended; the department moves to another provider"


def person(username):
    return User.objects.get(username=username)


def submit(tenant, username, changes=LOOSEN, **extra):
    profile = Profile.objects.get(tenant=tenant, name="default")
    return change_request_submit(
        tenant=tenant,
        profile=profile,
        actor=person(username),
        changes=changes,
        justification="exercise",
        base_version=profile.current_version,
        **extra,
    )


def offboard(tenant, directory: Path) -> str:
    call_command(
        "offboard_tenant", tenant.slug, export=str(directory), reason=REASON, stdout=(out := _Out())
    )
    return out.text


class _Out:
    def __init__(self):
        self.text = ""

    def write(self, text):
        self.text += text

    def flush(self):
        pass


def verify(directory: Path, **options) -> str:
    out = _Out()
    call_command("verify_export", str(directory), stdout=out, **options)
    return out.text


def safest_values() -> dict:
    specs = [c.spec() for c in Capability.objects.filter(is_red_line=False)]
    return {s.key: safest_value(s) for s in specs if safest_value(s) is not None}


@pytest.fixture
def busy_demo(demo):
    """The demo with history: an applied change, a pending one, a rejected one, another tenant."""
    tenant = demo.tenant
    applied = submit(tenant, "vendor-admin", {"intel.foreign_analysis": "open_source_only"})
    change_request_decide(
        change_request_id=applied.pk,
        actor=person("customer-reviewer-1"),
        verdict="approve",
        channel=Channel.EMAIL,
    )
    rejected = submit(tenant, "vendor-admin", {"cyber.offensive_detail": "authorized_engagements"})
    change_request_decide(
        change_request_id=rejected.pk,
        actor=person("customer-reviewer-2"),
        verdict="reject",
        channel=Channel.CONSOLE,
        comment="not now",
    )
    pending = submit(tenant, "customer-admin")
    change_request_decide(
        change_request_id=pending.pk,
        actor=person("vendor-reviewer-1"),
        verdict="approve",
        channel=Channel.API,
    )
    return demo


def test_offboard_tenant__demo__revokes_withdraws_tightens_and_marks_it(busy_demo, tmp_path):
    tenant = busy_demo.tenant
    pending = ChangeRequest.objects.get(tenant=tenant, status=RequestStatus.PENDING)
    profile = Profile.objects.get(tenant=tenant, name="default")
    before = profile.current_version

    output = offboard(tenant, tmp_path / "bundle")

    assert not DeploymentToken.objects.filter(
        deployment__tenant=tenant, revoked_at__isnull=True
    ).exists()
    assert DeploymentToken.objects.filter(deployment__tenant=tenant).count() == 3
    pending.refresh_from_db()
    assert pending.status == RequestStatus.WITHDRAWN
    assert pending.status_reason == f"the tenant is being offboarded: {REASON}"
    profile.refresh_from_db()
    assert profile.current_version == before + 1
    final = ProfileVersion.objects.get(profile=profile, number=profile.current_version)
    assert (final.kind, final.source) == (VersionKind.BRAKE, "offboarding")
    specs = [c.spec() for c in Capability.objects.all()]
    effective = effective_values(specs, final.values)
    assert {key: effective[key] for key in safest_values()} == safest_values()
    assert hasattr(final, "rollout"), "the final version rolls out like any other"
    tenant.refresh_from_db()
    assert tenant.offboarded_at is not None
    event = AuditEvent.objects.get(action="tenant.offboarded", tenant="demo")
    assert event.actor == "command:offboard_tenant"
    assert event.data["tokens_revoked"] == 3
    assert event.data["withdrawn"] == [pending.pk]
    assert event.data["versions"] == {"default": profile.current_version}
    assert audit_verify()[1] is None
    assert "3 tokens revoked, 1 pending requests withdrawn" in output


def test_offboarded_tenant__any_change__is_refused_and_records_stay(busy_demo, tmp_path):
    tenant = busy_demo.tenant
    offboard(tenant, tmp_path / "bundle")
    counts = (
        ChangeRequest.objects.count(),
        ProfileVersion.objects.count(),
        Deployment.objects.count(),
    )
    deployment = Deployment.objects.filter(tenant=tenant).first()
    refused = [
        lambda: submit(tenant, "vendor-admin"),
        lambda: brake_pull(tenant=tenant, actor=person("vendor-admin"), reason="again"),
        lambda: deployment_token_issue(deployment=deployment),
        lambda: deployment_create(tenant=tenant, slug="late"),
        lambda: membership_set(
            tenant=tenant, user=person("auditor"), party=Party.CUSTOMER, role=Role.VIEWER
        ),
        lambda: membership_remove(tenant=tenant, user=person("auditor")),
    ]
    for call in refused:
        with pytest.raises(TenantOffboarded, match=r"demo was offboarded on .* can no longer be"):
            call()
    assert counts == (
        ChangeRequest.objects.count(),
        ProfileVersion.objects.count(),
        Deployment.objects.count(),
    )
    with pytest.raises(TenantOffboarded, match="already offboarded"):
        tenant_offboard(tenant=tenant, actor="command:test", reason="twice")


def test_offboarded_tenant__api_change_request__is_409_with_a_clear_error(busy_demo, tmp_path):
    offboard(busy_demo.tenant, tmp_path / "bundle")
    client = APIClient()
    client.force_authenticate(person("vendor-admin"))
    response = client.post(
        "/api/v1/tenants/demo/change-requests/",
        {"base_version": 3, "changes": LOOSEN, "justification": "after the end"},
        format="json",
    )
    assert response.status_code == 409
    assert response.json()["error"] == "tenant_offboarded"
    assert "can no longer be changed" in response.json()["detail"]


def test_offboard__customer_admin__is_not_allowed(busy_demo):
    from approvals.errors import NotAllowed

    with pytest.raises(NotAllowed, match="only vendor admins of demo may offboard it"):
        tenant_offboard(tenant=busy_demo.tenant, actor=person("customer-admin"), reason="leave")
    assert Tenant.objects.get(slug="demo").offboarded_at is None


def test_offboard__approved_request_and_running_grant__are_closed(demo, tmp_path):
    tenant = demo.tenant
    grant = submit(tenant, "vendor-admin", time_box=timedelta(hours=4))
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1"):
        change_request_decide(
            change_request_id=grant.pk, actor=person(name), verdict="approve", channel="api"
        )
    change_request_decide(
        change_request_id=grant.pk,
        actor=person("customer-reviewer-2"),
        verdict="approve",
        channel="api",
    )
    grant.refresh_from_db()
    assert grant.status == RequestStatus.APPLIED and grant.revert_at is not None

    result = tenant_offboard(tenant=tenant, actor=person("vendor-admin"), reason=REASON)

    grant.refresh_from_db()
    assert grant.reverted_at == result.offboarded_at
    assert result.grants_settled == [grant.pk]
    skipped = AuditEvent.objects.get(
        action="grant.revert_skipped", target=f"change_request:{grant.pk}"
    )
    assert skipped.actor == "user:vendor-admin"


# The bundle ------------------------------------------------------------------------------------


@pytest.fixture
def bundle(busy_demo, tmp_path) -> Path:
    directory = tmp_path / "bundle"
    offboard(busy_demo.tenant, directory)
    return directory


def test_bundle__demo__holds_every_version_request_and_event_and_verifies(bundle):
    manifest = json.loads((bundle / export.MANIFEST).read_bytes())
    versions = ProfileVersion.objects.filter(profile__tenant__slug="demo").count()
    events = AuditEvent.objects.filter(tenant="demo").count()
    assert manifest["tenant"] == "demo"
    assert manifest["chain"]["tenant_events"] == events
    assert manifest["chain"]["head_sequence"] == AuditEvent.objects.count()
    assert manifest["counts"] == {"versions": versions, "change_requests": 3}
    assert sorted(manifest["files"]) == sorted(
        [
            "README.txt",
            "audit/chain.txt",
            "audit/events.jsonl",
            "change-requests.jsonl",
            "signing-keys.json",
            "versions.jsonl",
        ]
        + [f"versions/default/{n}.{ext}" for n in range(1, versions + 1) for ext in ("json", "sig")]
    )
    lines = (bundle / export.EVENTS).read_text().splitlines()
    first = json.loads(lines[0])
    assert set(first) == {
        "sequence",
        "created_at",
        "actor",
        "tenant",
        "action",
        "target",
        "data",
        "prev_hash",
        "hash",
    }
    requests = [
        json.loads(line) for line in (bundle / export.CHANGE_REQUESTS).read_text().splitlines()
    ]
    assert [len(r["decisions"]) for r in requests] == [1, 1, 1]
    assert requests[1]["decisions"][0] | {"created_at": None} == {
        "reviewer": "customer-reviewer-2",
        "party": "customer",
        "verdict": "reject",
        "comment": "not now",
        "channel": "console",
        "request_digest": requests[1]["digest"],
        "created_at": None,
    }
    output = verify(bundle)
    assert output.startswith(
        f"bundle of demo verifies: {len(manifest['files'])} files, {versions} signed versions, "
        f"3 change requests, {events} audit events in a chain of {AuditEvent.objects.count()}"
    )


def test_bundle__verified_against_the_published_keys__passes_and_a_foreign_key_fails(
    bundle, tmp_path, client
):
    published = tmp_path / "published.json"
    published.write_bytes(client.get("/api/v1/signing-keys").content)
    assert "verifies" in verify(bundle, keys=str(published))
    other = tmp_path / "other.json"
    jwk = json.loads(published.read_bytes())
    jwk["keys"][0]["kid"] = "someone-else"
    other.write_text(json.dumps(jwk))
    with pytest.raises(CommandError, match=r"manifest.sig over manifest.json: it is signed by key"):
        verify(bundle, keys=str(other))


KINDS = [
    "manifest.json",
    "manifest.sig",
    "signing-keys.json",
    "versions.jsonl",
    "versions/default/1.json",
    "versions/default/2.sig",
    "change-requests.jsonl",
    "audit/events.jsonl",
    "audit/chain.txt",
    "README.txt",
]


@pytest.mark.parametrize("name", KINDS)
def test_bundle__one_byte_changed__is_caught_naming_the_file(bundle, name):
    path = bundle / name
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(CommandError, match="the bundle does not verify") as error:
        verify(bundle)
    assert name in str(error.value)


def _resign(bundle: Path) -> None:
    """What an insider holding the signing key could do: fix every digest and sign again."""
    manifest = json.loads((bundle / export.MANIFEST).read_bytes())
    for name in manifest["files"]:
        data = (bundle / name).read_bytes()
        manifest["files"][name] = {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}
    body = json.dumps(manifest, indent=2, sort_keys=True).encode() + b"\n"
    (bundle / export.MANIFEST).write_bytes(body)
    (bundle / export.MANIFEST_SIGNATURE).write_text(keyring().sign(body) + "\n")


def _rewrite_lines(path: Path, change) -> None:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    change(lines)
    path.write_text("".join(export.json_line(line) for line in lines))


def test_bundle__event_edited_and_manifest_resigned__fails_on_the_event_hash(bundle):
    def edit(events):
        events[3]["data"]["forged"] = True

    _rewrite_lines(bundle / export.EVENTS, edit)
    _resign(bundle)
    sequence = json.loads((bundle / export.EVENTS).read_text().splitlines()[3])["sequence"]
    with pytest.raises(CommandError, match=rf"audit event #{sequence} .*hash does not match"):
        verify(bundle)


def test_bundle__event_rehashed_and_resigned__fails_on_the_chain(bundle):
    from datetime import datetime

    from audit.chain import ChainLink

    def edit(events):
        event = events[2]
        event["data"]["forged"] = True
        link = ChainLink(
            **{
                k: event[k]
                for k in ("sequence", "actor", "tenant", "action", "target", "data", "prev_hash")
            },
            created_at=datetime.fromisoformat(event["created_at"]),
        )
        event["hash"] = link.compute_hash()

    _rewrite_lines(bundle / export.EVENTS, edit)
    _resign(bundle)
    with pytest.raises(CommandError, match=r"its hash is not the one audit/chain.txt gives"):
        verify(bundle)


def test_bundle__version_document_edited_and_resigned__fails_on_its_signature(bundle):
    path = bundle / "versions/default/1.json"
    path.write_bytes(path.read_bytes().replace(b'"version":1', b'"version":9'))
    _resign(bundle)
    with pytest.raises(CommandError, match=r"versions/default/1.json: the signature by key"):
        verify(bundle)


def test_bundle__decision_removed_and_resigned__fails_against_the_audit_events(bundle):
    _rewrite_lines(bundle / export.CHANGE_REQUESTS, lambda rows: rows[1]["decisions"].clear())
    _resign(bundle)
    with pytest.raises(CommandError, match="its decisions differ from the decision audit events"):
        verify(bundle)


def test_bundle__chain_entry_missing__fails_naming_the_gap(bundle):
    path = bundle / export.CHAIN
    lines = path.read_text().splitlines(keepends=True)
    del lines[1]
    path.write_text("".join(lines))
    _resign(bundle)
    with pytest.raises(CommandError, match=r"jumps from #1 to #3"):
        verify(bundle)


def test_bundle__file_added__is_caught(bundle):
    (bundle / "versions/default/99.json").write_text("{}")
    with pytest.raises(CommandError, match=r"versions/default/99.json is not listed"):
        verify(bundle)


def test_bundle_write__not_empty_directory__is_refused(busy_demo, tmp_path):
    (tmp_path / "x").write_text("keep")
    with pytest.raises(FileExistsError, match="is not empty"):
        tenant_bundle_write(tenant=busy_demo.tenant, directory=tmp_path)


def test_offboard_tenant__run_again__rewrites_only_the_bundle(bundle, tmp_path):
    versions = ProfileVersion.objects.count()
    output = offboard(Tenant.objects.get(slug="demo"), tmp_path / "again")
    assert "was offboarded on" in output and "writing its bundle again" in output
    assert ProfileVersion.objects.count() == versions
    assert "verifies" in verify(tmp_path / "again")


def test_bundle__other_tenant_events__are_only_hashes_in_the_chain(
    make_tenant, busy_demo, tmp_path
):
    make_tenant("other")
    directory = tmp_path / "bundle"
    tenant_bundle_write(tenant=busy_demo.tenant, directory=directory)
    chain = (directory / export.CHAIN).read_text()
    other = AuditEvent.objects.filter(tenant="other").order_by("sequence").first()
    assert f"{other.sequence} {other.hash}\n" in chain
    assert "other" not in (directory / export.EVENTS).read_text()
    assert "verifies" in verify(directory)


@pytest.mark.django_db(transaction=True)
def test_offboard__request_submitted_concurrently__waits_for_it_then_withdraws_it(demo):
    """A submit that is in flight when offboarding starts holds the tenant (share lock):
    offboarding waits for its commit and then closes the new request too."""
    submitted = threading.Event()
    release = threading.Event()
    offboarded: list = []

    def submit_and_hold():
        try:
            with transaction.atomic():
                submit(Tenant.objects.get(slug="demo"), "customer-admin")
                submitted.set()
                release.wait(10)
        finally:
            connection.close()

    def offboard_now():
        try:
            result = tenant_offboard(
                tenant=Tenant.objects.get(slug="demo"), actor="command:test", reason=REASON
            )
            offboarded.append(result)
        finally:
            connection.close()

    holder = threading.Thread(target=submit_and_hold)
    holder.start()
    assert submitted.wait(10)
    offboarder = threading.Thread(target=offboard_now)
    offboarder.start()
    offboarder.join(1.0)
    assert offboarder.is_alive(), "offboarding must wait for the change in flight"
    release.set()
    holder.join(10)
    offboarder.join(30)
    (result,) = offboarded
    request = ChangeRequest.objects.get(tenant__slug="demo")
    assert result.withdrawn == [request.pk]
    assert request.status == RequestStatus.WITHDRAWN
    with pytest.raises(TenantOffboarded):
        submit(Tenant.objects.get(slug="demo"), "customer-admin")


@pytest.mark.django_db(transaction=True)
def test_offboard__submit_arriving_mid_offboarding__is_refused_once_it_commits(demo):
    """A submit that arrives while offboarding runs waits for it, then is refused, even one
    built on the final version offboarding is writing."""
    token = DeploymentToken.objects.filter(deployment__tenant__slug="demo").first()
    token_held, release, outcome = threading.Event(), threading.Event(), []

    def hold_a_token():
        try:
            with transaction.atomic():
                DeploymentToken.objects.select_for_update().get(pk=token.pk)
                token_held.set()
                release.wait(10)
        finally:
            connection.close()

    def offboard_now():
        try:
            tenant_offboard(tenant=Tenant.objects.get(slug="demo"), actor="command:t", reason="x")
        finally:
            connection.close()

    def submit_on_the_final_version():
        try:
            profile = Profile.objects.get(tenant__slug="demo", name="default")
            outcome.append(
                change_request_submit(
                    tenant=profile.tenant,
                    profile=profile,
                    actor=person("customer-admin"),
                    changes=LOOSEN,
                    justification="late",
                    base_version=2,
                )
            )
        except Exception as error:
            outcome.append(error)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_a_token)
    holder.start()
    assert token_held.wait(10)
    offboarder = threading.Thread(target=offboard_now)
    offboarder.start()
    offboarder.join(1.0)
    submitter = threading.Thread(target=submit_on_the_final_version)
    submitter.start()
    submitter.join(1.0)
    assert offboarder.is_alive() and submitter.is_alive()
    release.set()
    for thread in (holder, offboarder, submitter):
        thread.join(30)
    (result,) = outcome
    assert isinstance(result, TenantOffboarded), result
    assert not ChangeRequest.objects.filter(tenant__slug="demo").exists()


def test_seed_demo__demo_offboarded__leaves_it_as_it_was(busy_demo, tmp_path):
    offboard(busy_demo.tenant, tmp_path / "bundle")
    events = AuditEvent.objects.count()
    out = _Out()
    call_command("seed_demo", stdout=out)
    assert out.text == "demo tenant 'demo' was offboarded; it is kept as it was\n"
    assert AuditEvent.objects.count() == events
    assert not DeploymentToken.objects.filter(revoked_at__isnull=True).exists()
