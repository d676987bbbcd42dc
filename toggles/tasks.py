"""Celery tasks of the rollout: thin, given ids, safe to run twice (toggles.rollout decides)."""

from celery import shared_task

from toggles import rollout


@shared_task(acks_late=True, ignore_result=True)
def rollout_advance(rollout_id: int) -> None:
    rollout.rollout_advance(rollout_id=rollout_id)


@shared_task(acks_late=True, ignore_result=True)
def rollout_targets_deliver(target_ids: list[int]) -> None:
    rollout.targets_deliver(target_ids=target_ids)


@shared_task(acks_late=True, ignore_result=True)
def rollouts_reconcile() -> dict[str, int]:
    return rollout.rollouts_reconcile()


@shared_task(acks_late=True, ignore_result=True)
def rollout_record_fetch(deployment_id: int, profile_id: int, version: int) -> None:
    rollout.rollout_record_fetch(
        deployment_id=deployment_id, profile_id=profile_id, version=version
    )
