"""Settings from the environment, checked in fresh processes as a deployment would start them."""

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from config.settings import DEVELOPMENT_SECRET_KEY

ROOT = Path(__file__).resolve().parents[2]
REFUSAL = (
    "django.core.exceptions.ImproperlyConfigured: SECRET_KEY must be set to a long random value "
    "when DEBUG is off"
)
# A deployment's process starts with only these from the machine, plus what each test sets:
# nothing that the test run itself exports (DJANGO_ALLOW_ASYNC_UNSAFE, REDIS_URL, ...) leaks in.
INHERITED = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONDONTWRITEBYTECODE")


def run(args, **env):
    """Run a Python process in the project with only the given Redline variables set."""
    clean = {k: v for k, v in os.environ.items() if k in INHERITED}
    clean["DJANGO_SETTINGS_MODULE"] = "config.settings"
    return subprocess.run(  # noqa: S603 - our own interpreter and fixed arguments
        [sys.executable, *args],
        cwd=ROOT,
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def production(**extra):
    return {
        "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(50),
        "ALLOWED_HOSTS": "redline.example.org",
        **extra,
    }


def test_check_deploy__production_settings__no_issues():
    result = run(["manage.py", "check", "--deploy", "--fail-level", "DEBUG"], **production())
    assert result.returncode == 0, result.stderr
    assert (result.stdout, result.stderr) == (
        "System check identified no issues (0 silenced).\n",
        "",
    )


@pytest.mark.parametrize(
    "secret",
    [None, "", DEVELOPMENT_SECRET_KEY],
    ids=["missing", "empty", "development-key"],
)
def test_settings__debug_off_without_a_real_secret_key__process_refuses_to_start(secret):
    env = {"DEBUG": "false", "ALLOWED_HOSTS": "redline.example.org"}
    if secret is not None:
        env["SECRET_KEY"] = secret
    result = run(["manage.py", "check"], **env)
    assert result.returncode == 1
    assert REFUSAL in result.stderr
    assert result.stdout == ""


SHOW_SETTINGS = """
import json
import django
django.setup()
from django.conf import settings as s
print(json.dumps({
    "debug": s.DEBUG,
    "hosts": s.ALLOWED_HOSTS,
    "database": [s.DATABASES["default"][k] for k in ("HOST", "PORT", "NAME", "USER")],
    "cache": s.CACHES["default"]["LOCATION"],
    "broker": s.CELERY_BROKER_URL,
    "mail": s.MAILERS["default"],
    "ssl_redirect": s.SECURE_SSL_REDIRECT,
    "session_cookie_secure": s.SESSION_COOKIE_SECURE,
    "site_url": s.SITE_URL,
}))
"""


def show_settings(**env) -> dict:
    result = run(["-c", SHOW_SETTINGS], **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_settings__from_the_environment__used():
    shown = show_settings(
        **production(
            DATABASE_URL="postgres://app:pw@db.internal:6543/redline_prod",
            REDIS_URL="redis://cache.internal:6380/2",
            EMAIL_URL="smtp+tls://mailer:secret@mail.example.org:587",
            ALLOWED_HOSTS="a.example.org,b.example.org",
        )
    )
    assert shown["debug"] is False
    assert shown["hosts"] == ["a.example.org", "b.example.org"]
    assert shown["database"] == ["db.internal", 6543, "redline_prod", "app"]
    assert shown["cache"] == shown["broker"] == "redis://cache.internal:6380/2"
    assert shown["mail"]["BACKEND"] == "django.core.mail.backends.smtp.EmailBackend"
    assert shown["mail"]["OPTIONS"]["host"] == "mail.example.org"
    assert shown["mail"]["OPTIONS"]["port"] == 587
    assert shown["mail"]["OPTIONS"]["use_tls"] is True
    assert (shown["ssl_redirect"], shown["session_cookie_secure"]) == (True, True)


def test_settings__development_defaults__local_servers_and_console_mail():
    shown = show_settings()
    assert shown["debug"] is True
    assert shown["database"] == ["127.0.0.1", 54329, "redline", "redline"]
    assert shown["cache"] == shown["broker"] == "redis://127.0.0.1:63799/0"
    assert shown["mail"]["BACKEND"] == "django.core.mail.backends.console.EmailBackend"
    assert shown["site_url"] == "http://127.0.0.1:8000"
    assert (shown["ssl_redirect"], shown["session_cookie_secure"]) == (False, False)


def test_settings__local_server_ports_moved__defaults_follow_them():
    shown = show_settings(
        REDLINE_PG_PORT="55432", REDLINE_REDIS_PORT="6390", REDLINE_WEB_PORT="8010"
    )
    assert shown["database"] == ["127.0.0.1", 55432, "redline", "redline"]
    assert shown["cache"] == shown["broker"] == "redis://127.0.0.1:6390/0"
    assert shown["site_url"] == "http://127.0.0.1:8010"
