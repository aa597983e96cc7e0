"""``diffalign eval`` and ``diffalign generate`` (registered by ``diffalign.cli``; torch-free import).

    diffalign eval --config CONFIG [--tuned DIR] [key=value ...]
    diffalign eval --base PIPELINE --tuned LORA_OR_PIPELINE --prompts FILE --reward NAME [--splits A B]
                   [--seeds-per-prompt K] [--guidance G] [--steps S] [--out DIR]
    diffalign generate --base PIPELINE [--tuned DIR] --prompt TEXT [--seeds 0 1 2] [--out grid.png]
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["register", "cmd_eval", "cmd_generate"]


def cmd_eval(args) -> int:
    from . import evaluate, read_prompts

    if args.config:
        from ..config import load_config

        cfg = load_config(args.config, args.overrides)
        if getattr(cfg, "eval", None) is None:
            raise ValueError(f"{args.config}: the config has no eval section")
        e = cfg.eval
        tuned = args.tuned or str(Path(cfg.train.output_dir) / "final")
        evaluate(cfg.model.path, tuned, read_prompts(e.prompts, e.splits, e.max_prompts), args.reward or e.reward,
                 args.out or e.out or str(Path(cfg.train.output_dir) / "eval"), e.seeds_per_prompt, e.seed,
                 e.guidance_scale, e.num_inference_steps, e.batch_size, e.grid_columns)
        return 0
    missing = [f"--{k}" for k in ("base", "tuned", "prompts", "reward") if not getattr(args, k)]
    if missing:
        raise ValueError(f"diffalign eval needs --config, or {', '.join(missing)}")
    evaluate(args.base, args.tuned, read_prompts(args.prompts, args.splits), args.reward, args.out or "outputs/eval",
             args.seeds_per_prompt, args.seed, args.guidance, args.steps, args.batch_size)
    return 0


def cmd_generate(args) -> int:
    import torch

    from . import generate, report

    pipe = generate.load_pipeline(args.base, device="cuda" if torch.cuda.is_available() else "cpu")
    prompts, seeds = [args.prompt] * len(args.seeds), list(args.seeds)
    base = generate.sample(pipe, prompts, seeds, args.guidance, args.steps, desc="base")
    tuned = base
    if args.tuned:
        if generate.is_lora(args.tuned):
            pipe.load_lora_weights(args.tuned)
        else:
            pipe = generate.load_pipeline(args.tuned, device=pipe.device)
        tuned = generate.sample(pipe, prompts, seeds, args.guidance, args.steps, desc="tuned")
    path = report.save_grid(base, tuned, args.out, columns=len(seeds))
    print(f"wrote {path} (top: base, bottom: {'tuned' if args.tuned else 'base'})")
    return 0


def register(sub) -> None:
    """Add the ``eval`` and ``generate`` subcommands to the CLI's subparsers."""
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
    e.add_argument("--seeds-per-prompt", type=int, default=1)
    e.add_argument("--seed", type=int, default=0, help="first seed")
    e.add_argument("--guidance", type=float, default=7.5)
    e.add_argument("--steps", type=int, default=25)
    e.add_argument("--batch-size", type=int, default=32)
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
