import threading

from aiosmtpd.controller import Controller
from django.conf import settings
from django.core.management.base import BaseCommand

from approvals.devmail import MailboxHandler


class Command(BaseCommand):
    help = (
        "Development SMTP server: keeps every message under REDLINE_DEV_MAILBOX, where the "
        "DEBUG-only outbox at /dev/outbox/ shows it. Never for production."
    )

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=settings.REDLINE_DEV_MAIL_PORT)

    def handle(self, *args, host, port, **options):
        controller = Controller(
            MailboxHandler(settings.REDLINE_DEV_MAILBOX), hostname=host, port=port
        )
        controller.start()
        self.stdout.write(
            f"mailcatcher: SMTP on {host}:{port}, mail kept in {settings.REDLINE_DEV_MAILBOX}"
        )
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            controller.stop()
