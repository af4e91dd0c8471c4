"""Search attributes that make every notification findable in the Web UI. Never PII."""

from temporalio.common import SearchAttributeKey

USER = SearchAttributeKey.for_keyword("TidingsUser")
TEMPLATE = SearchAttributeKey.for_keyword("TidingsTemplate")
CHANNELS = SearchAttributeKey.for_keyword_list("TidingsChannels")
STATUS = SearchAttributeKey.for_keyword("TidingsStatus")
PRIORITY = SearchAttributeKey.for_keyword("TidingsPriority")

ALL = (USER, TEMPLATE, CHANNELS, STATUS, PRIORITY)
