"""Management commands as an operator runs them: separate processes, exit codes, one-line errors.

The data is committed (transactional tests) so that the command's own process sees it.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from audit.models import AuditEvent
from tenants.selectors import deployment_for_token
from toggles.models import Capability

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.django_db(transaction=True)


def manage(*args):
    """Run manage.py against the test database."""
    db = connection.settings_dict
    url = f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.test_settings", "DATABASE_URL": url}
    return subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_sync_catalog__red_line_changed__exit_1_with_one_line_on_stderr(catalog, tmp_path):
    shipped = Path(Capability._meta.apps.get_app_config("toggles").path) / "catalog.toml"
    text = shipped.read_text()
    marker = 'key = "redline.fully_autonomous_weapons"'
    start = text.index(marker)
    edited = text[:start] + text[start:].replace("value = false", "value = true", 1)
    path = tmp_path / "catalog.toml"
    path.write_text(edited)
    before = list(Capability.objects.order_by("key").values())
    result = manage("sync_catalog", str(path))
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr == (
        "CommandError: red line 'redline.fully_autonomous_weapons' can never change "
        "(the catalog file alters fixed_value)\n"
    )
    assert list(Capability.objects.order_by("key").values()) == before


def test_verify_audit__intact_then_tampered__exit_0_then_1_naming_the_event(demo):
    count = AuditEvent.objects.count()
    intact = manage("verify_audit")
    assert (intact.returncode, intact.stdout) == (0, f"audit chain verifies: {count} events\n")
    with connection.cursor() as cursor:
        cursor.execute("ALTER TABLE audit_auditevent DISABLE TRIGGER audit_event_append_only")
        cursor.execute("UPDATE audit_auditevent SET target = 'forged' WHERE sequence = 5")
        cursor.execute("ALTER TABLE audit_auditevent ENABLE TRIGGER audit_event_append_only")
    tampered = manage("verify_audit")
    assert tampered.returncode == 1
    assert tampered.stderr == (
        "CommandError: audit chain broken at audit event #5: hash does not match the event's "
        "contents (5 events read)\n"
    )


def test_issue_token__demo_deployment__prints_a_token_that_resolves(demo):
    result = manage("issue_token", "demo/cyber-defence")
    assert result.returncode == 0
    token = result.stdout.strip()
    assert result.stdout == token + "\n"
    assert str(deployment_for_token(token)) == "demo/cyber-defence"
    bad = manage("issue_token", "demo/missing")
    assert bad.returncode == 1
    assert bad.stderr == (
        "CommandError: no deployment 'demo/missing'; name it as <tenant>/<deployment>, "
        "e.g. demo/analyst-unclass\n"
    )
