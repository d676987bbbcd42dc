"""The console's offboarding page: vendor admins only, a reason, a typed confirmation."""

import io
from pathlib import Path

import pytest
from django.core.management import call_command

from tenants.models import DeploymentToken, Tenant

URL = "/t/demo/offboard/"


@pytest.fixture
def export_dir(settings, tmp_path):
    settings.REDLINE_EXPORT_DIR = tmp_path / "exports"
    return settings.REDLINE_EXPORT_DIR


def login(client, username):
    from django.contrib.auth import get_user_model

    client.force_login(get_user_model().objects.get(username=username))
    return client


@pytest.mark.parametrize("username", ["customer-admin", "vendor-reviewer-1", "auditor"])
def test_offboard_page__not_a_vendor_admin__403(client, demo, username):
    assert login(client, username).get(URL).status_code == 403
    assert login(client, username).post(URL, {"reason": "x", "confirm": "demo"}).status_code == 403
    assert Tenant.objects.get(slug="demo").offboarded_at is None


def test_offboard_page__vendor_admin__sees_what_will_happen(client, demo):
    page = login(client, "vendor-admin").get(URL)
    assert page.status_code == 200
    html = page.content.decode()
    assert '<strong data-testid="tokens">3</strong>' in html
    assert '<strong data-testid="pending">0</strong>' in html
    assert "<code>intel.foreign_analysis</code>: with_human_review → <strong>off</strong>" in html
    assert 'href="/t/demo/offboard/">Offboard</a>' in html
    other = login(client, "customer-admin").get("/t/demo/").content.decode()
    assert 'href="/t/demo/offboard/"' not in other


def test_offboard_page__reason_then_typed_slug__offboards_and_writes_a_bundle(
    client, demo, export_dir
):
    client = login(client, "vendor-admin")
    assert client.post(URL, {"reason": ""}).status_code == 400
    confirm = client.post(URL, {"reason": "contract ended"})
    assert confirm.status_code == 200
    assert "Type <strong>demo</strong> to confirm" in confirm.content.decode()
    wrong = client.post(URL, {"reason": "contract ended", "confirm": "Demo"})
    assert wrong.status_code == 400
    assert Tenant.objects.get(slug="demo").offboarded_at is None

    done = client.post(URL, {"reason": "contract ended", "confirm": "demo"})

    assert done.status_code == 302 and done["Location"] == URL
    assert Tenant.objects.get(slug="demo").offboarded_at is not None
    assert not DeploymentToken.objects.filter(revoked_at__isnull=True).exists()
    (bundle,) = Path(export_dir).glob("demo-*")
    out = io.StringIO()
    call_command("verify_export", str(bundle), stdout=out)
    assert out.getvalue().startswith("bundle of demo verifies")
    after = client.get(URL).content.decode()
    assert 'data-testid="offboarded"' in after
    assert f"<code>{bundle}</code>" in after
    assert client.post(URL, {"reason": "again", "confirm": "demo"}).status_code == 200
    assert len(list(Path(export_dir).glob("demo-*"))) == 1


def test_offboarded_tenant__auditor_downloads_the_bundle_and_it_verifies(
    client, demo, export_dir, tmp_path
):
    import tarfile

    login(client, "vendor-admin").post(URL, {"reason": "contract ended", "confirm": "demo"})
    (bundle,) = Path(export_dir).glob("demo-*")
    auditor = login(client, "auditor")
    page = auditor.get(URL).content.decode()
    link = f"/t/demo/offboard/{bundle.name}.tar"
    assert f'<a href="{link}">' in page
    response = auditor.get(link)
    assert response["Content-Type"] == "application/x-tar"
    archive = tmp_path / "bundle.tar"
    archive.write_bytes(b"".join(response.streaming_content))
    with tarfile.open(archive) as tar:
        tar.extractall(tmp_path / "taken", filter="data")
    out = io.StringIO()
    call_command("verify_export", str(tmp_path / "taken" / bundle.name), stdout=out)
    assert out.getvalue().startswith("bundle of demo verifies")
    assert auditor.get("/t/demo/offboard/demo-20000101T000000.tar").status_code == 404
    assert auditor.get("/t/demo/offboard/..%2Fsecret.tar").status_code == 404
    assert login(client, "vendor-reviewer-1").get(link).status_code == 403
