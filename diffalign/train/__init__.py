"""Trainers, and the one table that names them.

``TRAINERS`` maps a config's ``trainer:`` key to its config schema and its ``run`` function
(both imported lazily; this module is torch-free). Every trainer drives ``loop.py``, the one
training loop; they differ in where the next batch comes from:

| trainer | data | file |
|---|---|---|
| ``text`` | text preference pairs | ``text.py`` |
| ``diffusion`` | image preference pairs (offline) | ``offline.py`` |
| ``online`` | the policy's own samples, scored by a reward | ``online.py`` |

Add a trainer: ``train/<name>.py`` (+ its config schema) on ``loop.py``, and one row here.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["Trainer", "TRAINERS", "load_config", "parse_config"]


@dataclass(frozen=True)
class Trainer:
    """A row of the trainer table.

    Attributes:
        config: ``"module:Class"`` of the top-level config dataclass.
        run: ``"module:function"`` that trains from a validated config.
        summary: one line for ``diffalign list trainers``.
    """

    config: str
    run: str
    summary: str


TRAINERS: dict[str, Trainer] = {
    "text": Trainer("diffalign.train.text_config:TextTrainConfig", "diffalign.train.text:run",
                    "DPO-family training of a causal LM on preference pairs"),
    "diffusion": Trainer("diffalign.train.offline_config:DiffusionTrainConfig", "diffalign.train.offline:run",
                         "offline preference training of a diffusion model on image pairs"),
    "online": Trainer("diffalign.train.online_config:OnlineTrainConfig", "diffalign.train.online:run",
                      "online training of a diffusion model on its own scored samples (DRAGON, online DPO)"),
}


def parse_config(data: dict, where: str = "<config>"):
    """Validate a config mapping against the schema its ``trainer:`` key names (``TRAINERS``)."""
    from ..config import parse_config as _parse

    return _parse(data, {k: t.config for k, t in TRAINERS.items()}, where)


def load_config(path: str | Path, overrides: list[str] | None = None):
    """Read, override and validate a YAML config file.

    Args:
        path (str | Path): the YAML file.
        overrides (list[str] | None): ``key.path=value`` strings applied after reading.

    Returns:
        The config dataclass named by the file's ``trainer:`` key.

    Raises:
        ConfigError: unreadable file, unknown key, wrong type or missing required key.
    """
    from ..config import read_yaml

    return parse_config(read_yaml(path, overrides), str(path))


def run(cfg) -> dict:
    """Train from a validated config with the trainer its ``trainer:`` key names."""
    import importlib

    module, fn = TRAINERS[cfg.trainer].run.split(":")
    return getattr(importlib.import_module(module), fn)(cfg)
