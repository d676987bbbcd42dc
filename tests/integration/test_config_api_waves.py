"""Waves hold for pull deployments too: while a loosening is in its canary wave, the config
API serves it to canaries only; everyone else keeps the version before it until the general
wave opens. A version that only tightens reaches every deployment at once."""

import pytest
from django.contrib.auth import get_user_model

from tests.integration import config_api_support as support
from tests.integration.config_api_support import bearer
from toggles.models import Profile, Rollout, RolloutStatus, VersionKind, Wave
from toggles.rollout import rollout_advance, rollout_record_fetch, rollouts_reconcile
from toggles.services import profile_version_create

fresh_serving = support.fresh_serving

CANARY = "demo/analyst-unclass"
GENERAL = "demo/cyber-defence"
LIMIT = "usage.rate_limit_per_minute"


@pytest.fixture
def profile(demo):
    return Profile.objects.get(tenant=demo.tenant, name="default")


def write(profile, capture, changes, kind=VersionKind.CHANGE_REQUEST):
    with capture(execute=True):
        version = profile_version_create(
            profile=profile, changes=changes, actor=None, reason="waves", kind=kind
        )
    return Rollout.objects.get(version=version)


def served(client, demo, deployment: str) -> tuple[int, object]:
    response = client.get("/api/v1/config", **bearer(demo.new_tokens[deployment]))
    assert response.status_code == 200
    body = response.json()
    return body["version"], body["values"][LIMIT]


def flag(client, demo, deployment: str):
    response = client.post(
        f"/ofrep/v1/evaluate/flags/{LIMIT}",
        {},
        content_type="application/json",
        **bearer(demo.new_tokens[deployment]),
    )
    assert response.status_code == 200
    return response.json()["value"]


def test_loosening__canary_first__the_rest_once_the_general_wave_opens(
    client, demo, profile, django_capture_on_commit_callbacks
):
    assert served(client, demo, GENERAL) == (1, 600)
    rollout = write(profile, django_capture_on_commit_callbacks, {LIMIT: 700})
    profile.refresh_from_db()
    assert (profile.current_version, profile.released_version) == (2, 1)

    assert served(client, demo, CANARY) == (2, 700)  # served first: never leaks to the rest
    assert served(client, demo, GENERAL) == (1, 600)
    assert flag(client, demo, GENERAL) == 600
    assert flag(client, demo, CANARY) == 700

    rollout_advance(rollout_id=rollout.pk)
    canary = rollout.targets.get(deployment__slug="analyst-unclass")
    with django_capture_on_commit_callbacks(execute=True):
        rollout_record_fetch(deployment_id=canary.deployment_id, profile_id=profile.pk, version=2)
        rollout_advance(rollout_id=rollout.pk)
    rollout.refresh_from_db()
    profile.refresh_from_db()
    assert (rollout.wave, profile.released_version) == (Wave.GENERAL, 2)
    assert served(client, demo, GENERAL) == (2, 700)
    assert flag(client, demo, GENERAL) == 700


def test_tightening_during_a_canary_wave__reaches_everyone_at_once(
    client, demo, profile, django_capture_on_commit_callbacks
):
    loosening = write(profile, django_capture_on_commit_callbacks, {LIMIT: 700})
    rollout_advance(rollout_id=loosening.pk)
    assert served(client, demo, GENERAL) == (1, 600)

    write(profile, django_capture_on_commit_callbacks, {LIMIT: 100}, kind=VersionKind.BRAKE)
    profile.refresh_from_db()
    assert (profile.current_version, profile.released_version) == (3, 3)
    assert served(client, demo, GENERAL) == (3, 100)
    assert served(client, demo, CANARY) == (3, 100)


def test_canary_failed__rollout_paused__the_rest_keep_the_older_version(
    client, demo, profile, django_capture_on_commit_callbacks, settings
):
    settings.REDLINE_ROLLOUT_PULL_DEADLINE_SECONDS = 0
    rollout = write(profile, django_capture_on_commit_callbacks, {LIMIT: 700})
    rollout_advance(rollout_id=rollout.pk)
    rollouts_reconcile()
    rollout.refresh_from_db()
    assert rollout.status == RolloutStatus.PAUSED
    assert served(client, demo, GENERAL) == (1, 600)
    profile.refresh_from_db()
    assert profile.released_version == 1


def test_console_overview__says_while_only_canaries_have_the_current_version(
    client, demo, profile, django_capture_on_commit_callbacks
):
    client.force_login(get_user_model().objects.get(username="auditor"))
    assert 'data-testid="canary-only"' not in client.get("/t/demo/").content.decode()
    rollout = write(profile, django_capture_on_commit_callbacks, {LIMIT: 700})
    html = client.get("/t/demo/").content.decode()
    assert (
        '<p class="message warning" data-testid="canary-only">Canary deployments only, for now:'
        " the others run version 1 until the canaries have it and the rollout opens its general"
        " wave.</p>"
    ) in html
    rollout_advance(rollout_id=rollout.pk)
    canary = rollout.targets.get(deployment__slug="analyst-unclass")
    rollout_record_fetch(deployment_id=canary.deployment_id, profile_id=profile.pk, version=2)
    rollout_advance(rollout_id=rollout.pk)
    assert 'data-testid="canary-only"' not in client.get("/t/demo/").content.decode()
