"""The ``diffalign`` command line.

    diffalign train CONFIG [key=value ...]      train from a YAML config
    diffalign doctor CONFIG [key=value ...]     check a config end to end (= train --check)
    diffalign list {methods,trainers,losses,rewards,configs}
    diffalign bench text --config CONFIG --steps N [--against trl]
    diffalign bench diffusion --config CONFIG [--no-cache]
    diffalign bench kill --config CONFIG [--kills 24] [--out FILE]
    diffalign eval --config CONFIG [--tuned DIR] [key=value ...]
    diffalign eval --base PIPELINE --tuned LORA_OR_PIPELINE --prompts FILE --reward NAME [--splits A B]
                   [--judges J ...] [--labelled-by R] [--seeds-per-prompt K] [--shared-noise] [--guidance G] [--steps S] [--out DIR]
    diffalign generate --base PIPELINE [--tuned DIR] --prompt TEXT [--seeds 0 1 2] [--out grid.png]
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

def configs_root() -> Path:
    """``configs/`` of the source checkout (or of the current directory)."""
    here = Path(__file__).resolve().parent.parent / "configs"
    return here if here.is_dir() else Path("configs")


def cmd_train(args) -> int:
    from .train import load_config, run

    if args.check:
        return cmd_doctor(args)
    run(load_config(args.config, args.overrides))
    return 0


def cmd_doctor(args) -> int:
    from .train.doctor import doctor

    return doctor(args.config, args.overrides)


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
        from .methods import METHODS, method_class
        from .methods.base import NEEDS

        for name in METHODS:
            cls = method_class(name)
            needs = ", ".join(n for n in NEEDS if getattr(cls, f"needs_{n}")) or "—"
            print(f"{name:16s} {cls.paper:40s} needs: {needs}")
    elif what == "trainers":
        from .train import TRAINERS

        for name, t in TRAINERS.items():
            print(f"{name:12s} {t.summary}")
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


def cmd_eval(args) -> int:
    from .eval import evaluate, read_prompts

    if args.config:
        from .train import load_config

        cfg = load_config(args.config, args.overrides)
        if getattr(cfg, "eval", None) is None:
            raise ValueError(f"{args.config}: the config has no eval section")
        e = cfg.eval
        tuned = args.tuned or str(Path(cfg.train.output_dir) / "final")
        from .data.pairs import open_source

        # marked beside the evaluation, as the trainers do: an online run's training reward, else the data's labeller
        trained_on = getattr(cfg, "reward", None)
        d = getattr(cfg, "data", None)  # online configs may have no preference data (nothing labelled)
        if trained_on is not None and trained_on.name:
            labelled_by = trained_on.name
        else:
            labelled_by = open_source(d.source, d.split, d.allow_eval_split).labelled_by if getattr(d, "source", None) else None
        headline = args.reward or e.reward
        if args.reward is None and trained_on is not None:
            from .train.online import eval_reward

            headline = eval_reward(cfg)  # the training reward with its arguments (exemplar_similarity: its exemplars)

        def pick(flag, value):  # a flag given on the command line wins over the config's eval section
            return value if flag is None else flag

        evaluate(args.base or cfg.model.path, tuned,
                 read_prompts(args.prompts or e.prompts, pick(args.splits, e.splits), e.max_prompts),
                 headline, args.out or e.out or str(Path(cfg.train.output_dir) / "eval"),
                 pick(args.seeds_per_prompt, e.seeds_per_prompt), pick(args.seed, e.seed),
                 pick(args.guidance, e.guidance_scale), pick(args.steps, e.num_inference_steps),
                 pick(args.batch_size, e.batch_size), e.grid_columns,
                 judges=args.judges if args.judges is not None else e.judges,
                 labelled_by=args.labelled_by or labelled_by, shared_noise=pick(args.shared_noise, e.shared_noise))
        return 0
    missing = [f"--{k}" for k in ("base", "tuned", "prompts", "reward") if not getattr(args, k)]
    if missing:
        raise ValueError(f"diffalign eval needs --config, or {', '.join(missing)}")
    evaluate(args.base, args.tuned, read_prompts(args.prompts, args.splits), args.reward, args.out or "outputs/eval",
             args.seeds_per_prompt or 1, args.seed or 0, 7.5 if args.guidance is None else args.guidance,
             args.steps or 25, args.batch_size or 32, judges=args.judges or [], labelled_by=args.labelled_by,
             shared_noise=bool(args.shared_noise))
    return 0


def cmd_generate(args) -> int:
    import torch

    from .eval import generate, report
    from .sampling.pipeline import sample

    pipe = generate.load_pipeline(args.base, device="cuda" if torch.cuda.is_available() else "cpu")
    prompts, seeds = [args.prompt] * len(args.seeds), list(args.seeds)
    base = sample(pipe, prompts, seeds, args.guidance, args.steps, desc="base")
    tuned = base
    if args.tuned:
        if generate.is_lora(args.tuned):
            pipe.load_lora_weights(args.tuned)
        else:
            pipe = generate.load_pipeline(args.tuned, device=pipe.device)
        tuned = sample(pipe, prompts, seeds, args.guidance, args.steps, desc="tuned")
    path = report.save_grid([base, tuned], args.out)
    print(f"wrote {path} (top: base, bottom: {'tuned' if args.tuned else 'base'})")
    return 0


def _register_eval(sub) -> None:
    """The ``eval`` and ``generate`` subcommands."""
    e = sub.add_parser("eval", help="win rate and reward of a tuned model against its base",
                       description="Generate with base and tuned on fixed prompts and seeds; score with a reward; "
                                   "print mean reward and win rate with 95%% CIs; write a grid and a report.")
    e.add_argument("--config", help="a training config with an eval section (tuned: <output_dir>/final)")
    e.add_argument("overrides", nargs="*", help="key.path=value overrides of the config")
    e.add_argument("--base", help="base pipeline folder")
    e.add_argument("--tuned", help="LoRA folder or pipeline folder")
    e.add_argument("--prompts", help="JSON (list or {split: list}) or text file of prompts")
    e.add_argument("--splits", nargs="*", help="splits of a JSON mapping (first = headline)")
    e.add_argument("--reward", help="reward name (diffalign list rewards)")
    e.add_argument("--judges", nargs="*", help="independent scorers reported beside the reward (e.g. toy_judge)")
    e.add_argument("--labelled-by", help="the reward that labelled the training data (marked; warned about if alone)")
    e.add_argument("--seeds-per-prompt", type=int, default=None, help="default 1 (with --config: the config's)")
    e.add_argument("--seed", type=int, default=None, help="first seed; default 0 (with --config: the config's)")
    e.add_argument("--guidance", type=float, default=None, help="default 7.5 (with --config: the config's)")
    e.add_argument("--steps", type=int, default=None, help="default 25 (with --config: the config's)")
    e.add_argument("--batch-size", type=int, default=None, help="default 32 (with --config: the config's)")
    e.add_argument("--shared-noise", action="store_const", const=True, default=None,
                   help="slot k of every prompt uses seed + k (the old scheme; rows correlated across prompts, CIs too "
                        "narrow); default: every (prompt, slot) row its own seed")
    e.add_argument("--out", help="report folder")
    e.set_defaults(func=cmd_eval)

    g = sub.add_parser("generate", help="sample base (and tuned) images for one prompt into a grid PNG")
    g.add_argument("--base", required=True, help="base pipeline folder")
    g.add_argument("--tuned", help="LoRA folder or pipeline folder")
    g.add_argument("--prompt", required=True)
    g.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    g.add_argument("--guidance", type=float, default=7.5)
    g.add_argument("--steps", type=int, default=25)
    g.add_argument("--out", default="outputs/generate.png")
    g.set_defaults(func=cmd_generate)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="diffalign", description="Align diffusion models and LLMs with preferences and rewards.")
    p.add_argument("--version", action="version", version=f"diffalign {__version__}")
    p.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train from a YAML config", description="Train from a YAML config.")
    t.add_argument("config", help="path to a YAML config (see `diffalign list configs`)")
    t.add_argument("overrides", nargs="*", help="key.path=value overrides, e.g. train.lr=1e-4")
    t.add_argument("--check", action="store_true", help="only check the config end to end (= diffalign doctor)")
    t.set_defaults(func=cmd_train)

    dr = sub.add_parser("doctor", help="check a config end to end in seconds (paths, weights, data, a dry step)",
                        description="Check a training config end to end: config, reward names, paths, a one-step "
                                    "dry run on a slice of the data in a temporary folder, evaluation scorers.")
    dr.add_argument("config", help="path to a YAML config")
    dr.add_argument("overrides", nargs="*", help="key.path=value overrides")
    dr.set_defaults(func=cmd_doctor)

    ls = sub.add_parser("list", help="list methods, trainers, loss kinds, rewards or configs")
    ls.add_argument("what", choices=["methods", "trainers", "losses", "rewards", "configs"])
    ls.set_defaults(func=cmd_list)

    b = sub.add_parser("bench", help="throughput and memory benchmarks", description="Benchmarks that print figures.")
    b.add_argument("target", choices=["text", "diffusion", "kill"])
    b.add_argument("--config", help="YAML config to benchmark (all targets but diffusion --against)")
    b.add_argument("--steps", type=int, default=20, help="timed optimiser steps (after warm-up)")
    b.add_argument("--warmup", type=int, default=3, help="untimed warm-up steps")
    b.add_argument("--against", nargs="+", metavar=("PEER", "PATH"),
                   help="text: trl (TRL's DPOTrainer on the same model, data and batch); diffusion: diffusers-script "
                        "PATH (diffusers' train_diffusion_dpo.py side by side; without PATH: how to get it)")
    b.add_argument("--arch", default="sd-small", choices=["sd-small", "sd15"],
                   help="diffusion --against: the random-weight architecture (configs/bench/)")
    b.add_argument("--resolution", type=int, help="diffusion --against: pixels (default 128 for sd-small, 256 for sd15)")
    b.add_argument("--batch", type=int, nargs="+", default=[2, 4], help="diffusion --against: pairs per step")
    b.add_argument("--repeats", type=int, default=3, help="diffusion --against: interleaved repeats")
    b.add_argument("--pairs", type=int, default=256, help="diffusion --against: pairs in the synthetic dataset")
    b.add_argument("--skip", type=int, default=2, help="diffusion --against: leading steps left out of pairs/s")
    b.add_argument("--cache", choices=["both", "on", "off"], default="both",
                   help="diffusion --against: run ours with the latent cache, without it, or both")
    b.add_argument("--mixed-precision", choices=["no", "fp16", "bf16"], default="no",
                   help="diffusion --against: both programs' precision (no = fp32)")
    b.add_argument("--script-args", default="", metavar="'ARGS'",
                   help="diffusion --against: extra flags for the script, one string written with = "
                        "(--script-args=--enable_xformers_memory_efficient_attention)")
    b.add_argument("--ours-set", nargs="*", default=[], metavar="KEY=VALUE",
                   help="diffusion --against: config overrides for our runs (e.g. train.compile=true)")
    b.add_argument("--ablate", nargs="*", default=[], metavar="KEY=VALUE",
                   help="diffusion --against: one more row per override, each on top of ours with the cache "
                        "(e.g. reference.overlap=true model.channels_last=true)")

    b.add_argument("--no-cache", action="store_true", help="diffusion: encode images and text every step")
    b.add_argument("--out", help="also write the figures as JSON to this file")
    b.add_argument("--kills", type=int, default=24, help="kill: kill points (each a fresh run, killed, resumed)")
    b.add_argument("--site-fraction", type=float, default=0.33,
                   help="kill: share of kills at fault sites (checkpoint write, pruning, final save); the rest uniform in time")
    b.add_argument("--seed", type=int, default=0, help="kill: seed of the kill plan")
    b.add_argument("--workdir", help="kill: scratch folder (default outputs/killbench/<config name>)")
    b.add_argument("--keep", action="store_true", help="kill: keep the folders of chains that passed")
    b.set_defaults(func=cmd_bench)

    _register_eval(sub)
    # Sub-packages that add their own subcommands (each module's import is torch-free).
    for name in ("diffalign.toy.commands",):
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
