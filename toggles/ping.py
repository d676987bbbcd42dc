"""A test ping to a deployment's webhook, signed like a real delivery."""

import json

from django.conf import settings
from django.utils import timezone

from tenants.models import Deployment
from toggles.delivery import PushResult, push
from toggles.signing import keyring


def webhook_ping(*, deployment: Deployment) -> PushResult:
    """POST a small signed ping event; nothing is delivered and nothing is recorded."""
    body = json.dumps(
        {
            "type": "ping",
            "tenant": deployment.tenant.slug,
            "deployment": deployment.slug,
            "sent_at": timezone.now().isoformat(),
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()
    return push(
        url=deployment.webhook_url,
        body=body,
        headers={"Config-Signature": keyring().sign(body), "Redline-Event": "ping"},
        timeout=settings.REDLINE_ROLLOUT_TIMEOUT_SECONDS,
    )
