"""Exponential backoff for loops that wait on a service to come back."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Backoff:
    """Waits of `first`, then twice the previous one, capped at `cap` (seconds)."""

    first: float = 0.5
    cap: float = 30.0
    _next: float = 0.0

    def next(self) -> float:
        """The next wait."""
        wait = self._next or self.first
        self._next = min(self.cap, wait * 2)
        return wait

    def reset(self) -> None:
        """Start again from `first` (after a success)."""
        self._next = 0.0
