import pytest
from django.contrib.auth import get_user_model

from approvals.models import Channel, RequestStatus
from approvals.services import change_request_decide, change_request_submit
from toggles.models import Profile

User = get_user_model()


@pytest.fixture
def profile(demo):
    return Profile.objects.get(tenant=demo.tenant, name="default")


def test_loosening__both_quorums__applies_new_version(demo, profile):
    requester = User.objects.get(username="vendor-admin")
    cr = change_request_submit(
        tenant=demo.tenant,
        profile=profile,
        actor=requester,
        changes={"intel.foreign_analysis": "full"},
        justification="mission need",
        base_version=1,
    )
    assert (cr.required_vendor, cr.required_customer, cr.is_loosening) == (2, 2, True)
    for name in ("vendor-reviewer-1", "vendor-reviewer-2", "customer-reviewer-1"):
        change_request_decide(
            change_request_id=cr.pk,
            actor=User.objects.get(username=name),
            verdict="approve",
            channel=Channel.API,
        )
        cr.refresh_from_db()
        assert cr.status == RequestStatus.PENDING
    change_request_decide(
        change_request_id=cr.pk,
        actor=User.objects.get(username="customer-reviewer-2"),
        verdict="approve",
        channel=Channel.API,
    )
    cr.refresh_from_db()
    profile.refresh_from_db()
    assert (cr.status, cr.applied_version, profile.current_version) == ("applied", 2, 2)
