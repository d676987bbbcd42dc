"""The development mail catcher (`manage.py mailcatcher`, started by `make run`) and the
DEBUG-only outbox that shows what it caught, with clickable links."""

import os
import re
import subprocess
import sys

import pytest
from django.core.mail import EmailMultiAlternatives
from django.test import Client

from approvals.devmail import mailbox_list
from tests.fault.processes import ROOT, free_port, wait_until

pytestmark = pytest.mark.slow

LINK = "http://127.0.0.1:8000/review/abc.def/"


@pytest.fixture
def catcher(tmp_path):
    """`manage.py mailcatcher` as `make run` starts it, keeping mail in a directory of the test."""
    directory, port = tmp_path / "mail", free_port()
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "config.settings"}
    env["REDLINE_DEV_MAILBOX"] = str(directory)
    process = subprocess.Popen(  # noqa: S603 (this interpreter, this project's manage.py)
        [sys.executable, "manage.py", "mailcatcher", "--port", str(port)],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    wait_until(lambda: b"mailcatcher: SMTP on" in process.stdout.readline(), timeout=30)
    yield directory, port
    process.terminate()
    process.wait(10)


@pytest.fixture
def caught(catcher, settings):
    """One mail sent through Django's SMTP backend to the catcher."""
    directory, port = catcher
    settings.MAILERS = {
        "default": {
            "BACKEND": "django.core.mail.backends.smtp.EmailBackend",
            "OPTIONS": {"host": "127.0.0.1", "port": port, "timeout": 5},
        }
    }
    message = EmailMultiAlternatives(
        subject="Approve or reject: loosen 1 safety setting",
        body=f"Review and decide here:\n  {LINK}\n<b>not markup</b>\n",
        to=["customer-reviewer-1@customer.example"],
    )
    message.attach_alternative(f'<p><a href="{LINK}">Review</a></p>', "text/html")
    message.send()
    [mail] = wait_until(lambda: mailbox_list(directory), timeout=10, what="the caught mail")
    settings.REDLINE_DEV_MAILBOX = directory
    return mail


def test_catcher__mail_sent_over_smtp__kept_whole(caught):
    assert caught.to == "customer-reviewer-1@customer.example"
    assert caught.subject == "Approve or reject: loosen 1 safety setting"
    assert LINK in caught.text
    assert caught.html == f'<p><a href="{LINK}">Review</a></p>\n'


def test_outbox__debug__lists_mail_and_shows_it_with_clickable_links(caught, settings):
    settings.DEBUG = True
    client = Client()

    listing = client.get("/dev/outbox/")
    shown = client.get(f"/dev/outbox/{caught.name}/")
    html = client.get(f"/dev/outbox/{caught.name}/html")

    assert listing.status_code == 200
    assert (
        f'<a href="/dev/outbox/{caught.name}/">Approve or reject: loosen 1 safety setting</a>'
    ) in listing.text
    assert shown.status_code == 200
    assert f'<a href="{LINK}" rel="nofollow">{LINK}</a>' in shown.text
    assert "&lt;b&gt;not markup&lt;/b&gt;" in shown.text
    assert html.status_code == 200
    assert html.text == f'<p><a href="{LINK}">Review</a></p>\n'
    assert html.headers["Content-Security-Policy"].startswith("default-src 'none';")


def test_outbox__debug_off__404(caught, settings):
    settings.DEBUG = False

    for path in ("/dev/outbox/", f"/dev/outbox/{caught.name}/", f"/dev/outbox/{caught.name}/html"):
        assert Client().get(path).status_code == 404


@pytest.mark.parametrize("name", ["..%2F..%2Fconfig%2Fsettings.py", "nope.eml", ".hidden.eml"])
def test_outbox__a_name_the_catcher_never_wrote__404(caught, settings, name):
    settings.DEBUG = True

    assert Client().get(f"/dev/outbox/{name}/").status_code == 404
    assert re.fullmatch(r"\d{8}T\d{12}-[0-9a-f]{32}\.eml", caught.name)
