from django.apps import AppConfig


class ApprovalsConfig(AppConfig):
    name = "approvals"

    def ready(self):
        from approvals.notifications import notify_rollout_paused
        from toggles.rollout import rollout_paused

        def rollout_paused_received(sender, rollout, event_id, **kwargs):
            notify_rollout_paused(tenant=rollout.profile.tenant, event_id=event_id)

        rollout_paused.connect(rollout_paused_received, weak=False)
