"""The maildir an SMTP sink writes (`<id>.eml` plus `index.json`) and `tidings mail` reads.

Apart from the sink so reading needs no SMTP server library (aiosmtpd is in the dev-stack
extra, not in the production image).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import tempfile
from datetime import datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import cast

from pydantic import AwareDatetime, BaseModel

INDEX_FILE = "index.json"
_MAIL_ID_RE = re.compile(r"^[0-9]{13}-[0-9a-f]{8}$")


class ReceivedMail(BaseModel):
    id: str
    mail_from: str
    rcpt_tos: list[str]
    subject: str = ""
    message_id: str | None = None
    received_at: AwareDatetime
    raw: bytes = b""

    def parsed(self) -> EmailMessage:
        return BytesParser(policy=policy.default).parsebytes(self.raw)

    def body(self, subtype: str = "plain") -> str | None:
        """The decoded text/<subtype> part with plain newlines, or None when there is none."""
        part = self.parsed().get_body(preferencelist=(subtype,))
        if part is None or part.get_content_subtype() != subtype:
            return None
        # The wire format uses CRLF; callers compare and display text with \n.
        return cast(str, part.get_content()).replace("\r\n", "\n")


def list_mail(maildir: Path) -> list[ReceivedMail]:
    """Every message a sink has written to `maildir`, oldest first; [] when there is none."""
    return [_with_raw(maildir, entry) for entry in _read_index(maildir)]


def read_mail(maildir: Path, mail_id: str) -> ReceivedMail:
    if not _MAIL_ID_RE.match(mail_id):
        raise ValueError(f"mail_id {mail_id!r} is not a sink message id")
    for entry in _read_index(maildir):
        if entry.id == mail_id:
            return _with_raw(maildir, entry)
    raise KeyError(f"no message {mail_id!r} in {maildir}")


def _read_index(maildir: Path) -> list[ReceivedMail]:
    path = maildir / INDEX_FILE
    if not path.exists():
        return []
    entries = json.loads(path.read_text(encoding="utf-8"))
    return [ReceivedMail.model_validate(e) for e in entries]


def _with_raw(maildir: Path, entry: ReceivedMail) -> ReceivedMail:
    return entry.model_copy(update={"raw": (maildir / f"{entry.id}.eml").read_bytes()})


def append_to_maildir(maildir: Path, mail: ReceivedMail) -> None:
    maildir.mkdir(parents=True, exist_ok=True)
    (maildir / f"{mail.id}.eml").write_bytes(mail.raw)
    entries = [e.model_dump(mode="json", exclude={"raw"}) for e in _read_index(maildir)]
    entries.append(mail.model_dump(mode="json", exclude={"raw"}))
    # Write-then-rename so a reader in another process never sees a half-written index.
    fd, tmp = tempfile.mkstemp(dir=maildir, prefix=".index-", suffix=".tmp")
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(entries, f, indent=1)
    os.replace(tmp, maildir / INDEX_FILE)


def new_mail_id(now: datetime) -> str:
    # Sorts by arrival and is safe as a file name.
    return f"{int(now.timestamp() * 1000):013d}-{secrets.token_hex(4)}"
