from celery import shared_task

from approvals.services import change_requests_sweep


@shared_task(acks_late=True)
def sweep_change_requests() -> dict[str, list[int]]:
    """Expire overdue requests, retry approved ones, revert ended grants. Safe to repeat."""
    result = change_requests_sweep()
    return {"expired": result.expired, "applied": result.applied, "reverted": result.reverted}
