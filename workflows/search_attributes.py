"""Search attributes that make every notification findable in the Web UI. Never PII."""

from temporalio.common import SearchAttributeKey

USER = SearchAttributeKey.for_keyword("TidingsUser")
TEMPLATE = SearchAttributeKey.for_keyword("TidingsTemplate")
CHANNELS = SearchAttributeKey.for_keyword_list("TidingsChannels")
STATUS = SearchAttributeKey.for_keyword("TidingsStatus")
PRIORITY = SearchAttributeKey.for_keyword("TidingsPriority")
# An A/B test's parent workflow and every notification it starts; the arm on the notifications.
EXPERIMENT = SearchAttributeKey.for_keyword("TidingsExperiment")
VARIANT = SearchAttributeKey.for_keyword("TidingsVariant")
# A broadcast's workflow and the notifications it starts for recipients who must wait.
BROADCAST = SearchAttributeKey.for_keyword("TidingsBroadcast")

ALL = (USER, TEMPLATE, CHANNELS, STATUS, PRIORITY, EXPERIMENT, VARIANT, BROADCAST)
