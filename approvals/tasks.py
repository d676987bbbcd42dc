from smtplib import SMTPException

from celery import shared_task

from approvals import emails
from approvals.services import change_requests_sweep

# Mail is retried with backoff while the mail server is unreachable or refuses for now.
MAIL_RETRY = {
    "acks_late": True,
    "autoretry_for": (SMTPException, OSError),
    "retry_backoff": 5,
    "retry_backoff_max": 600,
    "max_retries": 10,
}


@shared_task(acks_late=True)
def sweep_change_requests() -> dict[str, list[int]]:
    """Expire overdue requests, retry approved ones, revert ended grants. Safe to repeat."""
    result = change_requests_sweep()
    return {
        "expired": result.expired,
        "applied": result.applied,
        "reverted": result.reverted,
        "failed": result.failed,
    }


@shared_task(**MAIL_RETRY)
def send_review_request(change_request_id: int, reviewer_id: int) -> bool:
    """One reviewer's mail with their personal link; sends nothing twice."""
    return emails.review_request_send(change_request_id=change_request_id, reviewer_id=reviewer_id)


@shared_task(**MAIL_RETRY)
def send_request_closed(change_request_id: int, recipient_id: int) -> bool:
    return emails.request_closed_send(
        change_request_id=change_request_id, recipient_id=recipient_id
    )


@shared_task(**MAIL_RETRY)
def send_brake_pulled(event_id: int, recipient_id: int) -> bool:
    return emails.brake_pulled_send(event_id=event_id, recipient_id=recipient_id)


@shared_task(**MAIL_RETRY)
def send_rollout_paused(event_id: int, recipient_id: int) -> bool:
    return emails.rollout_paused_send(event_id=event_id, recipient_id=recipient_id)
