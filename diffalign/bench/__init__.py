"""Benchmarks that print figures (never timed tests): ``diffalign bench {text,diffusion,kill}``."""

import importlib

__all__ = ["run_bench"]

_TARGETS = {"text": "diffalign.bench.text:main", "diffusion": "diffalign.bench.diffusion:main",
            "kill": "diffalign.bench.kill:main"}


def run_bench(args) -> int:
    """Dispatch ``diffalign bench <target>`` to its module's ``main(args)``."""
    if args.target == "diffusion" and getattr(args, "against", None):
        from .against import main

        return main(args)
    if not getattr(args, "config", None):
        raise ValueError(f"bench {args.target} needs --config CONFIG")
    module, fn = _TARGETS[args.target].split(":")
    return getattr(importlib.import_module(module), fn)(args)
