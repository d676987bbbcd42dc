"""Celery task of the audit webhook: thin, safe to run any number of times (audit.webhooks)."""

from celery import shared_task

from audit.webhooks import audit_webhook_forward


@shared_task(acks_late=True, ignore_result=True)
def audit_webhook_forward_task() -> dict:
    result = audit_webhook_forward()
    return {"batches": result.batches, "error": result.error}
