"""/healthz and /readyz against the real PostgreSQL and Redis, and against closed ports."""

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.test import override_settings

ROOT = Path(__file__).resolve().parents[2]


def closed_port() -> int:
    """A local port nothing listens on: connections to it are refused at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_healthz__process_up__200_ok(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_healthz__post__405(client):
    assert client.post("/healthz").status_code == 405


def test_readyz__postgres_and_redis_up__200(client, db):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok", "checks": {"postgres": True, "redis": True}}


def test_readyz__redis_unreachable__503_naming_redis(client, db):
    unreachable = {
        "default": {
            **settings.CACHES["default"],
            "LOCATION": f"redis://127.0.0.1:{closed_port()}/0",
        }
    }
    with override_settings(CACHES=unreachable):
        response = client.get("/readyz")
    assert response.status_code == 503
    assert response.json() == {
        "status": "unavailable",
        "down": ["redis"],
        "checks": {"postgres": True, "redis": False},
    }
    assert client.get("/readyz").status_code == 200


READYZ_PROBE = """
import django, json
django.setup()
from django.test import Client
response = Client().get("/readyz")
print(json.dumps({"status": response.status_code, "body": response.json()}))
"""


@pytest.mark.parametrize(
    ("broken", "down"),
    [("DATABASE_URL", ["postgres"]), ("both", ["postgres", "redis"])],
)
def test_readyz__postgres_unreachable__503_naming_postgres(broken, down):
    port = closed_port()
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"postgres://redline@127.0.0.1:{port}/redline",
    }
    if broken == "both":
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    result = subprocess.run(  # noqa: S603 - our own interpreter and a fixed script
        [sys.executable, "-c", READYZ_PROBE],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    answer = json.loads(result.stdout.strip().splitlines()[-1])
    assert answer["status"] == 503
    assert answer["body"]["status"] == "unavailable"
    assert answer["body"]["down"] == down
