"""Structured logs: JSON lines, a request id in and out and into Celery tasks, no secrets.

The last test runs the service for real (gunicorn, a Celery worker, an SMTP catcher) through a
full flow, then greps every line both processes logged for every token and password it used.
"""

import io
import json
import logging
import re
import uuid
from email import message_from_bytes, policy
from pathlib import Path

import pytest
import requests
from aiosmtpd.controller import Controller
from django.contrib.auth import get_user_model
from django.core.management import call_command

from approvals.devmail import MailboxHandler
from config.logging import redact_text
from tests.conftest import DEMO_PASSWORD
from tests.fault.processes import (
    RedisServer,
    WebServer,
    Worker,
    app_environment,
    free_port,
    wait_until,
)

User = get_user_model()


def formatted(message: str, *args, **extra) -> dict:
    """Render a standard-library record through the configured handler, as JSON."""
    record = logging.LogRecord("django.request", logging.WARNING, __file__, 1, message, args, None)
    for key, value in extra.items():
        setattr(record, key, value)
    return json.loads(logging.getHandlerByName("console").format(record))


def test_log_record__secrets_in_text__are_masked():
    line = formatted(
        "Not Found: %s (Authorization: Bearer %s, token %s) password=%s",
        "/review/AAAAAAAAAAAAAAAAAAAAAA.BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB/",
        "f" * 64,
        "rl_" + "x" * 43,
        "hunter2-hunter2",
    )
    assert line["event"] == (
        "Not Found: /review/[redacted]/ (Authorization: Bearer [redacted], token [redacted]) "
        "password=[redacted]"
    )
    assert (line["level"], line["logger"]) == ("warning", "django.request")


def test_redact_text__ordinary_text__is_left_alone():
    text = "rollout of demo/default v3 paused: canary analyst-unclass failed: HTTP 500"
    assert redact_text(text) == text


def test_request_id__given__comes_back_and_is_logged(client, caplog):
    with caplog.at_level(logging.INFO, logger="redline"):
        response = client.get("/api/schema/", HTTP_X_REQUEST_ID="trace-42.a:b")
    assert response["X-Request-ID"] == "trace-42.a:b"
    finished = [r.msg for r in caplog.records if isinstance(r.msg, dict)]
    assert {
        "event": "request.finished",
        "method": "GET",
        "path": "/api/schema/",
        "status": 200,
    }.items() <= finished[-1].items()


@pytest.mark.parametrize("given", ["", "has spaces", "x" * 129, "semi;colon"])
def test_request_id__missing_or_odd__a_new_one_is_made(client, given):
    response = client.get("/healthz", HTTP_X_REQUEST_ID=given)
    assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])


# A full run -------------------------------------------------------------------------------------


class Catcher:
    """An SMTP server in this process keeping every message as a file."""

    def __init__(self, directory: Path):
        self.directory = directory
        self.port = free_port()
        self.controller = Controller(
            MailboxHandler(directory), hostname="127.0.0.1", port=self.port
        )

    def messages(self):
        return [
            message_from_bytes(path.read_bytes(), policy=policy.default)
            for path in sorted(self.directory.glob("*.eml"))
        ]


def _login(base: str, username: str, password: str) -> requests.Session:
    session = requests.Session()
    page = session.get(f"{base}/login/", timeout=10)
    csrf = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
    session.post(
        f"{base}/login/",
        data={"username": username, "password": password, "csrfmiddlewaretoken": csrf},
        headers={"Referer": f"{base}/login/"},
        timeout=10,
    )
    return session


def _form_token(html: str) -> str:
    return re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html).group(1)


@pytest.fixture
def pbkdf2(settings):
    """Passwords hashed as the served processes check them (the suite's MD5 is for speed)."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.PBKDF2PasswordHasher"]


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_full_run__logs__carry_the_request_id_into_tasks_and_no_secret(pbkdf2, demo, tmp_path):
    catcher = Catcher(tmp_path / "mail")
    catcher.controller.start()
    redis_server = RedisServer(tmp_path).start()
    metrics_token = "metrics-" + uuid.uuid4().hex
    env = app_environment(
        redis_server.url(),
        EMAIL_URL=f"smtp://127.0.0.1:{catcher.port}",
        METRICS_TOKEN=metrics_token,
        SITE_URL="http://127.0.0.1",
    )
    web = WebServer(env, tmp_path / "web.log")
    worker = Worker(env, tmp_path / "worker.log", concurrency=1, beat=False)
    secrets = {"demo password": DEMO_PASSWORD, "metrics token": metrics_token}
    trace = "trace-" + uuid.uuid4().hex
    try:
        web.start()
        worker.start().wait_ready()
        base = web.url("")

        wrong = "not-the-password-" + uuid.uuid4().hex[:8]
        secrets["wrong password"] = wrong
        _login(base, "vendor-admin", wrong)
        admin = _login(base, "vendor-admin", DEMO_PASSWORD)
        page = admin.get(f"{base}/t/demo/deployments/", timeout=10)
        issued = admin.post(
            f"{base}/t/demo/deployments/analyst-unclass/tokens",
            data={"csrfmiddlewaretoken": _form_token(page.text)},
            headers={"Referer": f"{base}/t/demo/deployments/"},
            timeout=10,
        )
        token = re.search(r"rl_[A-Za-z0-9_-]{43}", issued.text).group(0)
        secrets["deployment token"] = token
        fetched = requests.get(
            f"{base}/api/v1/config", headers={"Authorization": f"Bearer {token}"}, timeout=10
        )
        assert fetched.status_code == 200
        bogus = "rl_" + uuid.uuid4().hex + uuid.uuid4().hex[:11]
        secrets["unknown deployment token"] = bogus
        assert (
            requests.get(
                f"{base}/api/v1/config", headers={"Authorization": f"Bearer {bogus}"}, timeout=10
            ).status_code
            == 401
        )

        out = io.StringIO()
        call_command("issue_api_token", "customer-admin", stdout=out)
        api_token = out.getvalue().strip().splitlines()[-1].split()[-1]
        secrets["API token"] = api_token
        submitted = requests.post(
            f"{base}/api/v1/tenants/demo/change-requests/",
            json={
                "base_version": 1,
                "changes": {"intel.foreign_analysis": "full"},
                "justification": "exercise",
            },
            headers={"Authorization": f"Bearer {api_token}", "X-Request-ID": trace},
            timeout=10,
        )
        assert submitted.status_code == 201, submitted.text
        assert submitted.headers["X-Request-ID"] == trace

        mails = wait_until(
            lambda: [m for m in catcher.messages() if "vendor-reviewer-1" in str(m["To"])],
            timeout=30,
            what="the review mail",
        )
        body = mails[0].get_body(preferencelist=("plain",)).get_content()
        link = re.search(r"/review/([A-Za-z0-9_-]{22}\.[A-Za-z0-9_-]{43})/", body).group(1)
        secrets["review link"] = link
        secrets["review link signature"] = link.split(".")[1]
        reviewer = requests.Session()
        page = reviewer.get(f"{base}/review/{link}/", timeout=10)
        assert page.status_code == 200
        decided = reviewer.post(
            f"{base}/review/{link}/",
            data={
                "csrfmiddlewaretoken": _form_token(page.text),
                "verdict": "approve",
                "password": DEMO_PASSWORD,
            },
            headers={"Origin": "null"},
            timeout=10,
        )
        assert decided.status_code == 200, decided.text[:500]
        assert "approve" in decided.text.lower()
        missing = "A" * 22 + "." + "B" * 43
        secrets["unknown review link"] = missing
        assert requests.get(f"{base}/review/{missing}/", timeout=10).status_code in (404, 410)

        scraped = requests.get(
            f"{base}/metrics", headers={"Authorization": f"Bearer {metrics_token}"}, timeout=10
        )
        assert "redline_decisions_total" in scraped.text
        wait_until(
            lambda: trace.encode() in worker.log.read_bytes(), timeout=30, what="a task log line"
        )
    finally:
        worker.stop()
        web.stop()
        redis_server.stop()
        catcher.controller.stop()

    web_lines = _json_lines(web.log)
    worker_lines = _json_lines(worker.log)
    everything = web.log.read_text() + worker.log.read_text()
    for what, secret in secrets.items():
        assert secret not in everything, f"the {what} was logged"
    assert {
        "event": "request.finished",
        "request_id": trace,
        "path": "/api/v1/tenants/demo/change-requests/",
        "status": 201,
    }.items() <= next(line for line in web_lines if line.get("request_id") == trace).items()
    traced_tasks = {
        line["task"] for line in worker_lines if line.get("request_id") == trace and "task" in line
    }
    assert "approvals.tasks.send_review_request" in traced_tasks
    review_paths = {line.get("path") for line in web_lines if "/review/" in line.get("path", "")}
    assert review_paths == {"/review/[redacted]/"}


def _json_lines(path: Path) -> list[dict]:
    """The JSON log lines (start-up lines of gunicorn and Celery before logging are plain)."""
    lines = []
    for raw in path.read_text().splitlines():
        if raw.startswith("{"):
            lines.append(json.loads(raw))
    return lines
