"""The console in a real browser: the wrong action is impossible, the right one obvious."""

from io import StringIO

import pytest
from django.core.management import call_command

from approvals.models import ChangeRequest, Decision
from tenants.models import DeploymentToken, Tenant
from tests.browser.conftest import screenshot
from toggles.models import Profile, ProfileVersion

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def test_requester__sees_no_approve_button__and_forged_post_is_refused(demo, page_for, live_server):
    page = page_for("vendor-reviewer-1")
    page.goto(f"{live_server.url}/t/demo/propose/")
    page.select_option("#f-intel\\.foreign_analysis", "full")
    page.wait_for_selector("[data-testid=needs]")
    assert page.inner_text("[data-testid=needs]") == (
        "Loosening (high risk): needs vendor 2 and customer 2."
    )
    page.fill("#justification", "analysts need full assistance")
    page.click("text=Submit for approval")
    page.wait_for_selector("[data-testid=status]")
    cr = ChangeRequest.objects.get()
    assert page.inner_text("[data-testid=quorum]") == "vendor 0 of 2, customer 0 of 2"
    assert page.locator("button[value=approve]").count() == 0
    assert page.is_visible("[data-testid=own-request]")
    screenshot(page, "request-own")
    forged = page.request.post(
        f"{live_server.url}/t/demo/requests/{cr.pk}/decide",
        form={
            "verdict": "approve",
            "csrfmiddlewaretoken": page.locator(
                "input[name=csrfmiddlewaretoken]"
            ).first.get_attribute("value"),
        },
        headers={"Referer": page.url},
    )
    assert forged.status == 403
    assert "the requester never decides on their own request" in forged.text()
    assert Decision.objects.count() == 0


def test_red_line__has_no_widget__and_forged_field_is_refused(demo, page_for, live_server):
    page = page_for("customer-admin")
    page.goto(f"{live_server.url}/t/demo/propose/")
    assert page.locator("[name='cap:redline.mass_domestic_surveillance']").count() == 0
    assert page.locator("[name='cap:redline.fully_autonomous_weapons']").count() == 0
    screenshot(page, "propose")
    page.evaluate(
        """() => {
            const input = document.createElement('input');
            input.type = 'hidden';
            input.name = 'cap:redline.mass_domestic_surveillance';
            input.value = 'true';
            document.getElementById('propose').appendChild(input);
        }"""
    )
    page.fill("#justification", "forged")
    with page.expect_response(lambda r: r.url.endswith("/t/demo/propose/")) as response:
        page.click("text=Submit for approval")
    assert response.value.status == 403
    assert page.inner_text("[data-testid=form-error]") == (
        "'redline.mass_domestic_surveillance' is a red line: it can never be changed or removed"
    )
    assert ChangeRequest.objects.count() == 0


def test_brake__tightens_at_once__and_shows_in_overview(demo, page_for, live_server):
    page = page_for("customer-reviewer-2")
    page.goto(f"{live_server.url}/t/demo/")
    assert page.inner_text("[data-testid='value-intel.foreign_analysis']") == "with_human_review"
    screenshot(page, "overview")
    page.click("text=Emergency brake")
    page.fill("#reason", "suspected misuse of the analyst deployment")
    screenshot(page, "brake")
    page.click("text=Review the brake")
    page.wait_for_selector("text=Confirm the emergency brake")
    screenshot(page, "brake-confirm")
    assert Profile.objects.get().current_version == 1
    page.click("text=Pull the brake")
    page.wait_for_selector(".message.warning")
    assert page.inner_text("[data-testid=current-version]") == "2"
    assert page.inner_text("[data-testid='value-intel.foreign_analysis']") == "off"
    screenshot(page, "overview-after-brake")
    assert ProfileVersion.objects.get(number=2).kind == "brake"


def test_offboarding__vendor_admin_confirms__tenant_closed_and_bundle_verifies(
    demo, page_for, live_server, settings, tmp_path
):
    settings.REDLINE_EXPORT_DIR = tmp_path / "exports"
    customer = page_for("customer-admin")
    customer.goto(f"{live_server.url}/t/demo/")
    assert customer.locator("nav >> text=Offboard").count() == 0
    assert customer.request.get(f"{live_server.url}/t/demo/offboard/").status == 403

    page = page_for("vendor-admin")
    page.goto(f"{live_server.url}/t/demo/deployments/")
    assert page.locator("text=Issue a new token").count() == 3
    page.click("nav >> text=Offboard")
    assert page.inner_text("[data-testid=tokens]") == "3"
    screenshot(page, "offboard")
    page.fill("#reason", "the contract ended on 2026-11-30")
    page.click("text=Review the offboarding")
    page.fill("#confirm", "dem")
    page.click("text=Offboard Department of Example now")
    assert page.inner_text("[role=alert]") == "Type demo exactly to confirm."
    assert Tenant.objects.get(slug="demo").offboarded_at is None
    screenshot(page, "offboard-confirm")
    page.fill("#confirm", "demo")
    page.click("text=Offboard Department of Example now")
    page.wait_for_selector("[data-testid=offboarded]")
    screenshot(page, "offboarded")

    assert Tenant.objects.get(slug="demo").offboarded_at is not None
    assert not DeploymentToken.objects.filter(revoked_at__isnull=True).exists()
    final = ProfileVersion.objects.get(profile__tenant__slug="demo", number=2)
    assert final.source == "offboarding"
    (bundle,) = (tmp_path / "exports").iterdir()
    out = StringIO()
    call_command("verify_export", str(bundle), stdout=out)
    assert out.getvalue().startswith("bundle of demo verifies: ")
    download = page.request.get(
        f"{live_server.url}/t/demo/offboard/{bundle.name}.tar", max_redirects=0
    )
    assert download.status == 200
    assert download.headers["content-type"] == "application/x-tar"
    assert page.locator("nav >> text=Propose").count() == 0
    assert page.locator("nav >> text=Emergency brake").count() == 0
    page.click("nav >> text=Deployments")
    assert page.inner_text("[data-testid=offboarded-banner]").endswith(
        "UTC: its records are read-only."
    )
    assert page.locator("text=Issue a new token").count() == 0
    screenshot(page, "offboarded-deployments")
    forged = page.request.get(f"{live_server.url}/t/demo/propose/")
    assert forged.status == 403
    assert "demo was offboarded on " in forged.text()
