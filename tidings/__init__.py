"""Tidings: the domain of durable multi-channel notifications. Never imports temporalio."""
