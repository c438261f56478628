"""The errors of the Kafka layer, each meant to be shown as one line."""

from __future__ import annotations

from foundation.errors import InfrastructureError


class BrokerError(InfrastructureError):
    """A Kafka broker problem, with a message meant to be shown as one line."""


class BrokerUnavailable(BrokerError):
    """The configured bootstrap servers cannot be reached (or refused the client)."""
