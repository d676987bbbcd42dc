"""A failed canary pauses a rollout; both parties are told by mail."""

from django.contrib.auth import get_user_model
from django.core import mail
from django.db import transaction

from approvals.emails import rollout_paused_send
from approvals.services import brake_pull
from audit.services import audit_record
from tenants.models import Membership
from toggles.models import Rollout
from toggles.rollout import rollout_paused

User = get_user_model()


def test_rollout_paused__signal__queues_a_mail_per_member_and_renders_it(
    demo, django_capture_on_commit_callbacks
):
    brake_pull(
        tenant=demo.tenant, actor=User.objects.get(username="vendor-reviewer-1"), reason="incident"
    )
    rollout = Rollout.objects.get(version__number=2)
    with transaction.atomic():
        event = audit_record(
            actor=None,
            action="rollout.paused",
            tenant="demo",
            target="rollout",
            data={
                "rollout": rollout.pk,
                "version": 2,
                "canary": "analyst-unclass",
                "error": "HTTP 500 from the webhook",
            },
        )
    with django_capture_on_commit_callbacks() as callbacks:
        rollout_paused.send(sender=Rollout, rollout=rollout, event_id=event.pk)
    assert len(callbacks) == Membership.objects.filter(tenant=demo.tenant).count() == 7

    mail.outbox.clear()
    customer = User.objects.get(username="customer-admin")
    assert rollout_paused_send(event_id=event.pk, recipient_id=customer.pk) is True
    (message,) = mail.outbox
    assert message.to == ["customer-admin@customer.example"]
    assert message.subject == (
        "Rollout of version 2 paused for Department of Example: canary analyst-unclass failed"
    )
    assert "HTTP 500 from the webhook" in message.body
    assert f"/t/demo/rollouts/{rollout.pk}/" in message.body
    assert message.alternatives[0].mimetype == "text/html"


def test_rollout_paused_send__not_a_pause_event__sends_nothing(demo):
    with transaction.atomic():
        event = audit_record(actor=None, action="rollout.resumed", tenant="demo", target="x")
    mail.outbox.clear()
    user = User.objects.get(username="customer-admin")
    assert rollout_paused_send(event_id=event.pk, recipient_id=user.pk) is False
    assert mail.outbox == []
