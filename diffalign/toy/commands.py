"""`diffalign toy ...` subcommands. Importing this module does not import torch.

    diffalign toy build {image,audio} [--out DIR] [--seed N] [--quick] [--threads N] [--only STAGE,...]
    diffalign toy report {image,audio} [--n N] [--out DIR] [--assets DIR] [--seed N]
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

WORLDS = ("image", "audio")


def register(subparsers) -> argparse.ArgumentParser:
    """Adds `toy build` and `toy report` to the CLI.

    Args:
        subparsers: the object returned by `ArgumentParser.add_subparsers()`.

    Returns:
        argparse.ArgumentParser: the `toy` parser. Each leaf sets `func(args) -> int`.
    """
    toy = subparsers.add_parser("toy", help="build or report the toy worlds (CPU minutes, no model hub)")
    sub = toy.add_subparsers(dest="toy_command", required=True)

    build = sub.add_parser("build", help="regenerate a toy world's assets from seeds")
    build.add_argument("world", choices=WORLDS)
    build.add_argument("--out", type=Path, default=None, help="asset folder (default: assets/toy/<world>)")
    build.add_argument("--seed", type=int, default=0)
    build.add_argument("--quick", action="store_true", help="a seconds-long build of every stage (for tests)")
    build.add_argument("--threads", type=int, default=2, help="torch CPU threads (never more than free cores)")
    build.add_argument("--only", help="re-run these stages (comma-separated) on the finished build in --out; image: "
                                      "judge, prefs, exemplars; audio: vocoder (with fidelity, prefs), fidelity, prefs, exemplars")
    build.set_defaults(func=_build)

    report = sub.add_parser("report", help="sample the base toy pipeline on held-out prompts and score it")
    report.add_argument("world", choices=WORLDS)
    report.add_argument("--n", type=int, default=216, help="samples (held-out prompts cycled)")
    report.add_argument("--out", type=Path, default=None, help="output folder (default: toy_report/<world>)")
    report.add_argument("--assets", type=Path, default=None, help="asset folder (default: the committed assets)")
    report.add_argument("--seed", type=int, default=0)
    report.add_argument("--threads", type=int, default=2)
    report.set_defaults(func=_report)
    return toy


def _quiet_threads() -> None:
    """Idle OpenMP threads sleep instead of spinning (set before torch loads): on a shared 2-core
    machine, spinning threads of two processes slowed training 1.5× (measured); must precede
    `import torch`."""
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def _build(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_threads()
    only = args.only.split(",") if args.only else None
    if args.world == "audio":
        from diffalign.toy.audio.build import DEFAULT_OUT as AUDIO_OUT, build_audio_world, resample_audio_world

        if only:
            resample_audio_world(args.out or AUDIO_OUT, threads=args.threads, only=only)
        else:
            build_audio_world(args.out or AUDIO_OUT, seed=args.seed, quick=args.quick, threads=args.threads)
        return 0
    from diffalign.toy.image.build import DEFAULT_OUT, build_config, build_image_world

    out = args.out or DEFAULT_OUT
    build_image_world(out, build_config(out, args.seed, args.quick, args.threads, only), only)
    return 0


def _report(args: argparse.Namespace) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    _quiet_threads()
    if args.world == "audio":
        from diffalign.toy.audio.report import report_audio

        report_audio(n=args.n, out_dir=args.out or Path("toy_report") / "audio", asset_dir=args.assets,
                     seed=args.seed, threads=args.threads)
        return 0
    from diffalign.toy.image.report import run_image_report

    run_image_report(n=args.n, out=args.out or Path("toy_report") / "image", asset_dir=args.assets,
                     seed=args.seed, threads=args.threads)
    return 0


def main(argv: list[str] | None = None) -> int:
    """Stand-alone entry (`python -m diffalign.toy.commands toy build image`) until the CLI exists."""
    parser = argparse.ArgumentParser(prog="diffalign")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    raise SystemExit(main())
