"""The domain's typed errors, mapped to what Temporal should do about each.

The `type` names are wire contracts: workflows/policies.py lists the non-retryable ones, and
recorded histories carry them. Anything not classified here is raised as is, so Temporal retries
it and the SDK logs its traceback: an error nobody expected is the one worth reading in full.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

from temporalio import activity
from temporalio.exceptions import ApplicationError

from tidings.channels.base import PermanentChannelError, RateLimitedError, TransientChannelError
from tidings.errors import NotFound
from tidings.rendering import TemplateError

PERMANENT = "PermanentDeliveryError"
TRANSIENT = "TransientDeliveryError"
RATE_LIMITED = "RateLimited"
NOT_FOUND = "NotFound"
TEMPLATE = "TemplateError"
CLASSIFIED = frozenset({PERMANENT, TRANSIENT, RATE_LIMITED, NOT_FOUND, TEMPLATE})

CLASSIFIED_ERRORS = (NotFound, TemplateError, PermanentChannelError, TransientChannelError)
_KINDS = {
    PERMANENT: "permanent",
    TRANSIENT: "transient",
    RATE_LIMITED: "rate limited",
    NOT_FOUND: "not found",
    TEMPLATE: "template",
}

log = logging.getLogger("tidings.activities")


def to_application_error(error: Exception) -> ApplicationError:
    """The ApplicationError for one of CLASSIFIED_ERRORS (anything else is a TypeError: the
    caller catches only those)."""
    if isinstance(error, NotFound):
        # The user or template was deleted while the run waited: no retry brings it back.
        return ApplicationError(str(error), type=NOT_FOUND, non_retryable=True)
    if isinstance(error, TemplateError):
        return ApplicationError(str(error), type=TEMPLATE, non_retryable=True)
    if isinstance(error, PermanentChannelError):
        return ApplicationError(error.reason, type=PERMANENT, non_retryable=True)
    if isinstance(error, RateLimitedError):
        # Temporal waits this long instead of the retry policy's backoff: the provider said when.
        delay = None if error.retry_after is None else timedelta(seconds=error.retry_after)
        return ApplicationError(error.reason, type=RATE_LIMITED, next_retry_delay=delay)
    if isinstance(error, TransientChannelError):
        return ApplicationError(error.reason, type=TRANSIENT)
    raise TypeError(f"not a classified error: {error!r}")


def describe(error: ApplicationError) -> str:
    """`transient: HTTP 503`: the classification and the reason, in one line."""
    text = f"{_KINDS.get(error.type or '', error.type)}: {error.message}"
    if error.next_retry_delay is not None:
        text += f" (retry in {error.next_retry_delay.total_seconds():g}s)"
    return text


@contextmanager
def classified(what: str) -> Iterator[None]:
    """Re-raise the domain's typed errors as ApplicationError, chained to the original, and log
    the failed attempt as one line without a traceback (we know what went wrong; worker/logs.py
    drops the SDK's own record of it)."""
    try:
        yield
    except CLASSIFIED_ERRORS as e:
        error = to_application_error(e)
        log.warning("%s attempt %d failed: %s", what, activity.info().attempt, describe(error))
        raise error from e
