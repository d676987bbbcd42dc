"""The deployment-facing endpoints keep to their OpenAPI description under generated traffic.

Schemathesis reads /api/schema/ from a live server and sends its generated requests (valid and
invalid) with a deployment token; every check must pass: no 5xx, status codes, content types,
headers and bodies as documented, invalid input refused, missing auth refused.
"""

import subprocess
import sys
from pathlib import Path

import pytest
import requests

from tests.integration import config_api_support as support

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

fresh_serving = support.fresh_serving

OPERATIONS = r"^/(api/v1/config|api/v1/config/ack|api/v1/signing-keys|ofrep/v1/evaluate/flags.*)$"


def test_schema__deployment_endpoints__schemathesis_finds_nothing(live_server, demo, tmp_path):
    token = demo.new_tokens["demo/analyst-unclass"]
    schemathesis = Path(sys.executable).with_name("schemathesis")
    schema = tmp_path / "openapi.json"
    schema.write_bytes(
        requests.get(f"{live_server.url}/api/schema/?format=json", timeout=30).content
    )

    run = subprocess.run(  # noqa: S603 (a fixed command line)
        [
            str(schemathesis),
            "run",
            str(schema),
            "--url",
            live_server.url,
            "--include-path-regex",
            OPERATIONS,
            "--checks",
            "all",
            "--header",
            f"Authorization: Bearer {token}",
            "--max-examples",
            "40",
            "--seed",
            "5",
            "--workers",
            "1",
            "--report-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )

    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    assert "Tested: 5" in run.stdout
    assert "No issues found" in run.stdout
