"""Task queue names, beside the workflows that run on them, so the worker, the client and the
workflows agree.

Priority is isolation, not ordering: HIGH and CRITICAL notifications run their workflows and their
channel activities on `-urgent` queues with their own pollers and slots, so a backlog of LOW and
MEDIUM work cannot sit in front of them. Each channel has its own activity queue so a provider's
rate limit (`max_task_queue_activities_per_second`) applies to that provider alone.
"""

from tidings.models import Channel, Priority

URGENT_SUFFIX = "-urgent"


def workflow_queue(base: str, priority: Priority) -> str:
    return base + URGENT_SUFFIX if priority.urgent else base


def channel_queue(base: str, channel: Channel, priority: Priority) -> str:
    name = f"{base}-{channel.value}"
    return name + URGENT_SUFFIX if priority.urgent else name


def workflow_id(notification_id: str) -> str:
    return f"notification/{notification_id}"


def experiment_workflow_id(experiment_id: str) -> str:
    return f"experiment/{experiment_id}"


def broadcast_workflow_id(broadcast_id: str) -> str:
    return f"broadcast/{broadcast_id}"


def experiment_notification_id(experiment_id: str, user_id: str) -> str:
    """The notification an A/B test sends a user: one per user per test, by construction."""
    return f"exp-{experiment_id}-{user_id}"
