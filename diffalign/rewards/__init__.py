"""Reward plugins: image, audio and distribution-level rewards behind one protocol.

Public API (heavy modules load lazily; importing this package imports neither torch nor any plugin)::

    from diffalign.rewards import Reward, RewardSpec, Samples, RewardResult   # the protocol
    from diffalign.rewards import available, load, list_rewards               # the registry
    from diffalign.rewards import WeightedSum, LeaveOneOut                    # combinators

See the README's Rewards section for writing a plugin and the table of built-ins.
"""

from __future__ import annotations

import importlib
from typing import Any

from diffalign.rewards.registry import GROUP, RewardRow, available, list_rewards, load, providers, spec_of

__all__ = [
    "GROUP",
    "LeaveOneOut",
    "Reward",
    "RewardResult",
    "RewardRow",
    "RewardSpec",
    "Samples",
    "WeightedSum",
    "available",
    "list_rewards",
    "load",
    "providers",
    "spec_of",
]

_LAZY = {
    "LeaveOneOut": "diffalign.rewards.set_reward",
    "Reward": "diffalign.rewards.base",
    "RewardResult": "diffalign.rewards.base",
    "RewardSpec": "diffalign.rewards.base",
    "Samples": "diffalign.rewards.base",
    "WeightedSum": "diffalign.rewards.combine",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
