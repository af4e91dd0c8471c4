"""Keep the worker's log to one line per failed attempt.

Our activities log each classified failure once, with the channel, notification, attempt number and
reason (activities/errors.py). The SDK then logs "Completing activity as failed" for the same
failure with its traceback, and the chained provider error makes that two tracebacks per attempt:
about 2,000 of them in a few minutes of a webhook outage. This filter drops the SDK's record for
failures we classified; failures nobody classified keep their traceback, which is the one a reader
needs.
"""

from __future__ import annotations

import logging

from temporalio.exceptions import ApplicationError

from activities.errors import CLASSIFIED

# The SDK logs activity failures through temporalio.activity.logger, an adapter over this logger.
SDK_ACTIVITY_LOGGER = "temporalio.activity"


class ClassifiedFailureFilter(logging.Filter):
    """Drops the SDK's "Completing activity as failed" record when the error is one of ours."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        return not (isinstance(error, ApplicationError) and error.type in CLASSIFIED)


def install_log_filter() -> None:
    """Install the filter on the SDK's activity logger (idempotent). A logger filter, not a
    handler filter, so it applies whatever handlers the process configures."""
    logger = logging.getLogger(SDK_ACTIVITY_LOGGER)
    if not any(isinstance(f, ClassifiedFailureFilter) for f in logger.filters):
        logger.addFilter(ClassifiedFailureFilter())
