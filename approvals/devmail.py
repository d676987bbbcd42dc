"""Development mail: an SMTP catcher that keeps each message as a file, and reading them back.

`manage.py mailcatcher` (started by `make run`) stores what Django sends under
REDLINE_DEV_MAILBOX; the DEBUG-only outbox at /dev/outbox/ lists and shows it.
"""

import re
import uuid
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

from django.utils import timezone

MAIL_NAME = re.compile(r"\d{8}T\d{12}-[0-9a-f]{32}\.eml")


class MailboxHandler:
    """An aiosmtpd handler that writes each message whole, then renames it into place."""

    def __init__(self, directory: Path):
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    async def handle_DATA(self, server, session, envelope) -> str:
        mailbox_store(self.directory, envelope.content)
        return "250 Message accepted for delivery"


def mailbox_store(directory: Path, content: bytes) -> Path:
    name = f"{timezone.now():%Y%m%dT%H%M%S%f}-{uuid.uuid4().hex}.eml"
    partial = directory / f".{name}.part"
    partial.write_bytes(content)
    return partial.rename(directory / name)


@dataclass(frozen=True)
class StoredMail:
    name: str
    sender: str
    to: str
    subject: str
    date: datetime | None
    text: str
    html: str


def _read(path: Path) -> StoredMail:
    message = message_from_bytes(path.read_bytes().replace(b"\r\n", b"\n"), policy=policy.default)
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    return StoredMail(
        name=path.name,
        sender=str(message["From"] or "").strip(),
        to=str(message["To"] or "").strip(),
        subject=str(message["Subject"] or "").strip(),
        date=parsedate_to_datetime(message["Date"]) if message["Date"] else None,
        text=text.get_content() if text else "",
        html=html.get_content() if html else "",
    )


def mailbox_list(directory: Path) -> list[StoredMail]:
    """Every stored message, newest first."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    names = [path.name for path in directory.iterdir() if MAIL_NAME.fullmatch(path.name)]
    return [_read(directory / name) for name in sorted(names, reverse=True)]


def mailbox_get(directory: Path, name: str) -> StoredMail | None:
    """One message by its file name; None for any name the catcher would not have written."""
    path = Path(directory) / name
    if not MAIL_NAME.fullmatch(name) or not path.is_file():
        return None
    return _read(path)
