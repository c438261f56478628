"""APO's knobs, importable without agent-lightning (which `learning.lightning` loads)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class APOOptions:
    """APO's knobs for one round (see `learning.lightning.run_apo`)."""

    beam_width: int = 1
    branch_factor: int = 2
    beam_rounds: int = 1
    gradient_batch_size: int = 3
    diversity_temperature: float = 1.0
    edit_attempts: int = 2
    """Tries at an edit that is a usable prompt before it is dropped."""
    max_tokens: int = 512
    """Cap on every optimizer completion."""
    rollout_timeout_s: float = 3600.0
