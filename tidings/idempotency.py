"""What "the same request" means for an idempotency key.

A key names one notification. The first request with a key claims it with the request's
fingerprint: the SHA-256 of the canonical JSON of the validated `NotificationRequest` (every
field, defaults filled in, keys sorted, times in UTC). A repeat whose fingerprint matches is the
same notification and gets it back; one that differs in anything that can change what is sent
(data, channels, times, priority...) is a `Conflict` naming the key. Two spellings of the same
instant (`+01:00` and `Z`) and an omitted field versus its default are the same request.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime
from typing import Any

from tidings.models import NotificationRequest


def _canonical(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_canonical(v) for v in value]
    return value


def fingerprint(request: NotificationRequest) -> str:
    body = _canonical(request.model_dump(mode="python"))
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256(text.encode()).hexdigest()
