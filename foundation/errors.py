"""The error every layer raises when a service the mesh depends on fails (not the input's fault)."""

from __future__ import annotations


class InfrastructureError(RuntimeError):
    """A model server, memory store, broker or other service is unreachable or broken.

    Such a failure says nothing about the message being handled: workers back off and retry it,
    the CLI prints one line and exits 2.
    """
