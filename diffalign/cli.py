"""The ``diffalign`` command line.

    diffalign train CONFIG [key=value ...]      train from a YAML config
    diffalign list {methods,losses,rewards,configs}
    diffalign bench text --config CONFIG --steps N [--against trl]
    diffalign bench diffusion --config CONFIG [--no-cache]
    diffalign eval ... / diffalign generate ...  (diffalign.eval.commands)
    diffalign toy {build,report} ...             toy worlds
    diffalign --version

Errors print one line and exit non-zero; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path

from . import __version__

__all__ = ["main"]

TRAINERS = {
    "text": "diffalign.train.text:run",
    "diffusion": "diffalign.train.offline:run",
}


def _load(ref: str):
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def configs_root() -> Path:
    """``configs/`` of the source checkout (or of the current directory)."""
    here = Path(__file__).resolve().parent.parent / "configs"
    return here if here.is_dir() else Path("configs")


def cmd_train(args) -> int:
    from .config import load_config

    cfg = load_config(args.config, args.overrides)
    _load(TRAINERS[cfg.trainer])(cfg)
    return 0


def cmd_list(args) -> int:
    what = args.what
    if what == "losses":
        from .losses import KINDS

        for k in KINDS.values():
            tags = ["reference-free" if k.reference_free else "needs reference"]
            tags += [n for n in sorted(k.needs) if n != "reference"]
            tags += ["unpaired"] if k.unpaired else []
            tags += ["batch-coupled"] if k.batch_coupled else []
            print(f"{k.name:14s} {k.paper:28s} {', '.join(tags)}")
    elif what == "methods":
        from .methods import METHODS

        for name, ref in METHODS.items():
            print(f"{name:16s} {ref}")
    elif what == "rewards":
        from .rewards import list_rewards

        for row in list_rewards():
            print("  ".join(f"{v!s:14s}" for v in row).rstrip())
    elif what == "configs":
        root = configs_root()
        for p in sorted(root.rglob("*.yaml")):
            print(p.relative_to(root.parent))
    return 0


def cmd_bench(args) -> int:
    from .bench import run_bench

    return run_bench(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffalign", description="Align diffusion models and LLMs with preferences and rewards.")
    p.add_argument("--version", action="version", version=f"diffalign {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train from a YAML config", description="Train from a YAML config.")
    t.add_argument("config", help="path to a YAML config (see `diffalign list configs`)")
    t.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.lr=1e-4")
    t.set_defaults(func=cmd_train)

    ls = sub.add_parser("list", help="list methods, loss kinds, rewards or configs")
    ls.add_argument("what", choices=["methods", "losses", "rewards", "configs"])
    ls.set_defaults(func=cmd_list)

    b = sub.add_parser("bench", help="throughput and memory benchmarks", description="Benchmarks that print figures.")
    b.add_argument("target", choices=["text", "diffusion"])
    b.add_argument("--config", required=True, help="YAML config to benchmark")
    b.add_argument("--steps", type=int, default=20, help="timed optimiser steps (after warm-up)")
    b.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps")
    b.add_argument("--against", choices=["trl"], help="also run TRL's DPOTrainer on the same model, data and batch")

    b.add_argument("--no-cache", action="store_true", help="diffusion: encode images and text every step")
    b.add_argument("--out", help="also write the figures as JSON to this file")
    b.set_defaults(func=cmd_bench)

    # Sub-packages that add their own subcommands (each module's import is torch-free).
    for name in ("diffalign.eval.commands", "diffalign.toy.commands"):
        try:
            mod = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name != name:
                raise
        else:
            mod.register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 — one readable line unless --debug
        if args.debug:
            raise
        msg = str(e).strip().splitlines()[0] if str(e).strip() else ""
        print(f"error: {type(e).__name__}: {msg}" if msg else f"error: {type(e).__name__}", file=sys.stderr)
        return 2 if isinstance(e, ValueError) else 1


if __name__ == "__main__":
    sys.exit(main())
