"""The console/file channel of the embedded default: each message becomes one JSON line in
``<FRONTDESK_OUTBOX_DIR>/outbox.jsonl`` (default ``var/outbox/``, git-ignored) and a short
INFO log line (channel, kind, message id: no contact, no body) on the ``frontdesk.outbox``
logger, which the demo shows while it serves; the messages stay viewable
(``selectors.console_outbox_read``).

Sign-in codes are written to the file only (never logged, never to DynamoDB)."""

from __future__ import annotations

import json
import logging
import threading
import uuid

from chalicelib.core import clock
from chalicelib.notify import config
from chalicelib.notify.channels.base import Outgoing, SendPermanent

_write_lock = threading.Lock()
log = logging.getLogger("frontdesk.outbox")
FILE_NAME = "outbox.jsonl"


class ConsoleChannel:
    """Writes messages to the local outbox file; accepts every well-formed address."""

    def __init__(self, name: str) -> None:
        self.name = name

    def send(self, message: Outgoing) -> str:
        if message.channel == "sms" and not (message.to.startswith("+") and message.to[1:].isdigit()):
            raise SendPermanent("invalid_address", contact="invalid")
        provider_id = f"console-{uuid.uuid4().hex}"
        line = {
            "provider_id": provider_id, "at": clock.now().isoformat(), "channel": message.channel,
            "to": message.to, "from": message.sender, "subject": message.subject, "text": message.text,
            "html": message.html, "meta": dict(message.meta), "sensitive": message.sensitive,
        }
        directory = config.settings().outbox_dir
        with _write_lock:
            directory.mkdir(parents=True, exist_ok=True)
            with open(directory / FILE_NAME, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, ensure_ascii=False) + "\n")
        if not message.sensitive:
            kind = message.meta.get("kind", "message")
            log.info("%s %s %s", message.channel, kind, message.meta.get("message_id", ""))
        return provider_id
