"""Exponential backoff for loops that wait on a service to come back."""

from __future__ import annotations

from dataclasses import dataclass


def exponential_delay(tries: int, first: float, cap: float) -> float:
    """The wait after `tries` failed tries: `first`, doubling each time, capped at `cap`."""
    return float(min(cap, first * 2 ** max(0, tries - 1)))


@dataclass
class Backoff:
    """Waits of `first`, then twice the previous one, capped at `cap` (seconds)."""

    first: float = 0.5
    cap: float = 30.0
    _tries: int = 0

    def next(self) -> float:
        """The next wait."""
        self._tries += 1
        return exponential_delay(self._tries, self.first, self.cap)

    def reset(self) -> None:
        """Start again from `first` (after a success)."""
        self._tries = 0
