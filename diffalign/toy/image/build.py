"""Builds the shapes-world assets from seeds: `diffalign toy build image [--out DIR] [--seed N] [--quick]`.

Stages (wall time of each goes to build_info.json):

1. tokenizer     toy CLIP vocabulary, each grammar word one token
2. vae           AutoencoderKL on fresh training renders; its reconstruction fidelity is checked
                 on held-out renders (the VAE caps everything downstream)
3. latents       posterior means of `n_images` training renders; scaling factor = 1 / std
4. unet          CLIPTextModel + UNet2DConditionModel trained jointly (ε-MSE, Min-SNR-5, EMA,
                 10% caption dropout); the pipeline is saved in diffusers format
5. toy_clip      open_clip model trained contrastively on renders of the whole world
   -- pretraining ends here; the remaining stages re-run on a finished build with --only --
   judge         toy_judge, the independent judge: a CNN trained on renders only (with VAE round
                 trips through the pipeline's VAE, blur, noise); it labels nothing
6. prefs         preference pairs on training prompts (and a small held-out set), labelled by
                 toy_fidelity: joint correctness (every named attribute) first, graded second
7. exemplars     rendered ground truth of the training prompts

The build writes into `<out>.partial` and replaces `<out>` only when every stage succeeded.

Example:
    python -m diffalign.toy.image.build --out /tmp/toy_image --quick
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path

from diffalign.toy.common import BuildRun
from diffalign.toy.image.assets import SAMPLING
from diffalign.toy.image.pretrain import UNetConfig, VAEConfig
from diffalign.toy.image.clip import ToyClipConfig
from diffalign.toy.image.judge import JudgeConfig

DEFAULT_OUT = Path(__file__).resolve().parents[3] / "assets" / "toy" / "image"


@dataclass
class ImageBuildConfig:
    """Everything the image build does; the defaults are the committed build.

    Args:
        seed (int): master seed; stage seeds are seed + a fixed offset.
        threads (int): torch CPU threads (never more than the free cores).
        vae (VAEConfig): VAE training.
        unet (UNetConfig): text encoder + UNet training.
        clip (ToyClipConfig): toy_clip training.
        judge (JudgeConfig): toy_judge training.
        sampling (dict): default sampling of the pipeline (guidance 3, DDIM 25 steps).
        vae_check_images (int): held-out renders for the VAE reconstruction check.
        pair_groups (int): prompt draws for training pairs (group_size // 2 pairs each).
        background_groups (int): more training groups that sample a background-naming caption without
            its background (``prefs.draw_groups``): pairs that teach the named background.
        held_out_pair_groups (int): prompt draws on held-out prompts (evaluation pairs).
        group_size (int): samples per draw.
        tie_margin (float): graded gap below which a pair is a tie (label 0.5).
        exemplars_per_prompt (int): renders per training prompt in the exemplar set.
        min_pairs (int): fail the build if fewer training pairs come out (0: no check).
    """

    seed: int = 0
    threads: int = 2
    vae: VAEConfig = field(default_factory=VAEConfig)
    unet: UNetConfig = field(default_factory=UNetConfig)
    clip: ToyClipConfig = field(default_factory=ToyClipConfig)
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    sampling: dict = field(default_factory=lambda: dict(SAMPLING))
    vae_check_images: int = 540
    pair_groups: int = 1000
    background_groups: int = 250
    held_out_pair_groups: int = 54
    group_size: int = 4
    tie_margin: float = 0.02
    exemplars_per_prompt: int = 4
    min_pairs: int = 2000

    @classmethod
    def from_info(cls, info: dict) -> "ImageBuildConfig":
        """The settings a finished build recorded in its ``build_info.json``."""
        c = dict(info["config"])
        judge = JudgeConfig(**{**c["judge"], "channels": tuple(c["judge"]["channels"])}) if "judge" in c else JudgeConfig()
        return cls(**{**c, "vae": VAEConfig(**c["vae"]), "unet": UNetConfig(**c["unet"]),
                      "clip": ToyClipConfig(**c["clip"]), "judge": judge})

    @classmethod
    def quick(cls, seed: int = 0) -> "ImageBuildConfig":
        """A seconds-long build with every stage, for tests (its assets are useless otherwise)."""
        return cls(
            seed=seed,
            vae=VAEConfig(channels=(8, 16, 16), steps=2, batch=8),
            unet=UNetConfig(channels=(16, 32), text_width=16, text_layers=1, n_images=64, steps=2, batch=8),
            clip=ToyClipConfig(embed_dim=16, width=16, layers=1, steps=2, batch=16),
            judge=JudgeConfig.quick(),
            sampling={**SAMPLING, "num_inference_steps": 2},
            vae_check_images=16,
            pair_groups=3,
            background_groups=1,
            held_out_pair_groups=1,
            group_size=2,
            exemplars_per_prompt=1,
            min_pairs=0,
        )


def readme(info: dict) -> str:
    """`README.md` of the asset folder: what the assets are, how they were built, wall times and sizes."""
    mb = lambda n: f"{n / 1e6:.2f} MB"  # noqa: E731
    st, env, pt, ph = info["stage_seconds"], info["environment"], info["prefs_train"], info["prefs_held_out"]
    sizes = info.get("sizes", {"per_entry": {}, "total": 0})  # the sizes of the previous run on an update
    lines = [
        "# Toy image world \"shapes\" — built assets",
        "",
        "Regenerate with `diffalign toy build image` (seed "
        f"{info['seed']}; {env['threads']} torch threads, OMP_WAIT_POLICY={env['omp_wait_policy'] or 'default'}); "
        "re-run the stages after pretraining on these assets with `--only judge,prefs,exemplars`. "
        "Layout and loading: `diffalign/toy/image/assets.py`; world and split: `diffalign/toy/image/world.py`.",
        "",
        f"Built with torch {env['torch']}, diffusers {env.get('diffusers')}, transformers {env.get('transformers')}, "
        f"open_clip {env.get('open_clip')} on {env['cpus']} CPUs."
        + "".join(f" Updated: {', '.join(u['stages'])}." for u in info.get("updates", [])),
        "",
        "| stage | wall time (s) |",
        "|---|---|",
        *[f"| {k} | {v:.0f} |" for k, v in st.items()],
        f"| **pretraining (tokenizer → toy_clip)** | **{info['pretrain_seconds']:.0f}** |",
        f"| total (sum of stages) | {sum(st.values()):.0f} |",
        "",
        "| asset | size |",
        "|---|---|",
        *[f"| {k} | {mb(v)} |" for k, v in sizes["per_entry"].items()],
        f"| **total** | **{mb(sizes['total'])}** |",
        "",
        f"Default sampling (use it everywhere): guidance {info['sampling']['guidance_scale']}, "
        f"{info['sampling']['num_inference_steps']} {info['sampling']['scheduler']} steps.",
        "",
        f"VAE reconstructions of held-out renders: joint fidelity {info['vae']['reconstruction_held_out']['joint']:.3f}.",
        *([f"`toy_judge` (independent judge, trained on renders only, {info['toy_judge']['params']:,} parameters): joint "
           f"accuracy {info['toy_judge']['check']['renders_joint']:.3f} on fresh renders of every prompt, "
           f"{info['toy_judge']['check']['vae_round_trip_joint']:.3f} on their VAE round trips, "
           f"{info['toy_judge']['check']['mismatched_joint']:.3f} with mismatched prompts "
           f"(n = {info['toy_judge']['check']['n']})."] if "toy_judge" in info else []),
        f"Base samples: training prompts joint {pt['sample_joint_mean']:.3f} (graded {pt['sample_graded_mean']:.3f}); "
        f"held-out prompts joint {ph['sample_joint_mean']:.3f} (graded {ph['sample_graded_mean']:.3f}).",
        "",
        f"`prefs_train.parquet`: {pt['pairs']} pairs from {pt['groups']} groups × {pt['group_size']} samples of "
        f"training prompts ({pt.get('background_groups', 0)} of them sample a background-naming caption without its "
        f"background), labelled by {pt.get('labelled_by', 'toy_fidelity')} ({pt.get('label_rule', 'graded gap')}); "
        f"{pt['ties']} ties (|gap| < {pt['tie_margin']}), {pt['pairs_differing_in_joint']} pairs differ in joint "
        f"correctness" + (f", per attribute {pt['pairs_differing_in']}" if "pairs_differing_in" in pt else "") + ". "
        f"`prefs_held_out.parquet`: {ph['pairs']} pairs on held-out prompts (evaluation only).",
        *([f"`{info['previous_prefs']['file']}`: {info['previous_prefs']['note']}"] if "previous_prefs" in info else []),
        "",
    ]
    return "\n".join(lines)


#: Stages that run on a finished build (``only=``): they read the saved pipeline, not the training state.
AFTER_PRETRAINING = ("judge", "prefs", "exemplars")


def build_image_world(out: str | Path = DEFAULT_OUT, cfg: ImageBuildConfig | None = None,
                      only: list[str] | None = None) -> dict:
    """Runs every stage (or, with ``only``, some stages on the finished build in ``out``) and writes the folder.

    Args:
        out (str | Path): destination folder (replaced at the end).
        cfg (ImageBuildConfig | None): settings; None uses the defaults (the committed build). With
            ``only``, None reads the settings the finished build recorded.
        only (list[str] | None): re-run these stages of ``AFTER_PRETRAINING`` on the finished build.

    Returns:
        dict: the build_info written to `<out>/build_info.json`.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    if only is not None:
        bad = sorted(set(only) - set(AFTER_PRETRAINING))
        if bad:
            raise ValueError(f"--only: {bad} cannot re-run on a finished build (choose from {list(AFTER_PRETRAINING)})")
    run = BuildRun(out, "image", update=only is not None)
    if cfg is None:
        cfg = ImageBuildConfig.from_info(run.info) if only is not None else ImageBuildConfig()
    import torch

    torch.set_num_threads(cfg.threads)
    if only is None:
        run.info.update(seed=cfg.seed, config=asdict(cfg), sampling=cfg.sampling,
                        command=f"diffalign toy build image --seed {cfg.seed}")
        pipe = _pretrain(run, cfg)
    else:
        from diffalign.toy.image.assets import load_pipeline

        run.info["config"] = asdict(cfg)
        pipe = load_pipeline(run.tmp)
    _after_pretraining(run, cfg, pipe, only or list(AFTER_PRETRAINING))
    return run.finish(readme)


def _pretrain(run: BuildRun, cfg: ImageBuildConfig):
    """Stages 1–5: tokenizer, VAE, latents, text encoder + UNet, toy_clip. Returns the saved pipeline."""
    import numpy as np
    import torch

    from diffalign.toy.image import pretrain as it
    from diffalign.toy.image.clip import save_toy_clip, train_toy_clip
    from diffalign.toy.image.scorer import score_fidelity
    from diffalign.toy.image.tokenizer import build_tokenizer
    from diffalign.toy.image.world import ShapesWorld, render

    world, info, tmp, log = ShapesWorld(), run.info, run.tmp, run.log
    with run.stage("tokenizer"):
        tokenizer = build_tokenizer(tmp / "_vocab", model_max_length=16)

    with run.stage("vae"):  # VAE, then the check that caps everything: can a decoded image still be read?
        vae = it.make_vae(cfg.vae, cfg.seed)
        info["vae"] = it.train_vae(vae, world, cfg.vae, cfg.seed + 10, log)
        rng = np.random.default_rng(cfg.seed + 11)
        check_prompts = [world.held_out_prompts[i] for i in rng.integers(len(world.held_out_prompts),
                                                                          size=cfg.vae_check_images)]
        check = torch.from_numpy(render(world.sample_specs(check_prompts, seed=cfg.seed + 12)))
        rec = score_fidelity(it.reconstruct(vae, check), check_prompts)
        info["vae"]["reconstruction_held_out"] = {k: float(rec[k].float().mean())
                                                  for k in ("graded", "joint", "colour_ok", "shape_ok")}
        log(f"vae reconstruction fidelity (held-out renders): {info['vae']['reconstruction_held_out']}")

    with run.stage("latents"):
        rng = np.random.default_rng(cfg.seed + 20)
        prompts = [world.train_prompts[i] for i in rng.integers(len(world.train_prompts), size=cfg.unet.n_images)]
        images = torch.from_numpy(render(world.sample_specs(prompts, seed=cfg.seed + 21)))
        latents = it.encode_latents(vae, images)  # [N, 4, 8, 8]
        scaling = float(1.0 / latents.std())
        vae.register_to_config(scaling_factor=scaling)
        latents = latents * scaling
        info["latents"] = {"n": len(latents), "scaling_factor": scaling, "shape": list(latents.shape[1:])}
        del images

    with run.stage("unet"):
        text_encoder, unet = it.make_text_unet(cfg.unet, tokenizer, cfg.seed + 30)
        info["unet"] = it.train_text_unet(text_encoder, unet, tokenizer, latents, prompts, cfg.unet, cfg.seed + 31, log)
        info["params"] = {name: sum(p.numel() for p in m.parameters()) for name, m in
                          [("unet", unet), ("vae", vae), ("text_encoder", text_encoder)]}
        pipe = it.assemble_pipeline(vae, text_encoder, tokenizer, unet)
        pipe.save_pretrained(str(tmp / "pipeline"))
        shutil.rmtree(tmp / "_vocab")

    with run.stage("toy_clip"):
        clip, info["toy_clip"] = train_toy_clip(world, tokenizer, cfg.clip, cfg.seed + 40, log)
        info["params"]["toy_clip"] = sum(p.numel() for p in clip.parameters())
        save_toy_clip(clip, cfg.clip, tokenizer, tmp / "toy_clip")
    info["pretrain_seconds"] = round(sum(info["stage_seconds"].values()), 1)
    return pipe


def _after_pretraining(run: BuildRun, cfg: ImageBuildConfig, pipe, stages: list[str]) -> None:
    """The stages after pretraining: the judge, preference pairs (base-pipeline samples), exemplars."""
    from diffalign.toy.image.judge import check_judge, save_judge, train_judge
    from diffalign.toy.image.prefs import exemplar_table, sample_preference_pairs, write_parquet
    from diffalign.toy.image.world import ShapesWorld

    world, info, tmp = ShapesWorld(), run.info, run.tmp
    if "judge" in stages:
        with run.stage("judge"):
            judge, metrics = train_judge(world, pipe.vae, cfg.judge, cfg.seed + 70, run.log)
            metrics["check"] = check_judge(judge, world, pipe.vae, 1000, cfg.seed + 71)
            run.log(f"toy_judge: {metrics['check']}")
            info["toy_judge"] = metrics
            save_judge(judge, cfg.judge, tmp / "toy_judge", metrics)
    if "prefs" in stages:
        import numpy as np

        from diffalign.toy.image.prefs import draw_groups

        with run.stage("prefs"):
            groups = draw_groups(world.train_prompts, cfg.pair_groups, np.random.default_rng(cfg.seed + 52),
                                 cfg.background_groups)
            pairs, info["prefs_train"] = sample_preference_pairs(pipe, groups, cfg.group_size, cfg.seed + 50,
                                                                 cfg.tie_margin, cfg.sampling, run.log)
            if len(pairs) < cfg.min_pairs:
                raise RuntimeError(f"only {len(pairs)} training pairs, fewer than min_pairs={cfg.min_pairs}")
            write_parquet(pairs, tmp / "prefs_train.parquet")
            if (tmp / "prefs_train_v1.parquet").exists():
                info["previous_prefs"] = {"file": "prefs_train_v1.parquet", "note": "the first set (2,000 pairs from "
                                          "1,000 groups, labelled by graded colour + shape fidelity alone), kept for "
                                          "comparison"}
            held_groups = draw_groups(world.held_out_prompts, cfg.held_out_pair_groups,
                                      np.random.default_rng(cfg.seed + 53))
            held, info["prefs_held_out"] = sample_preference_pairs(pipe, held_groups, cfg.group_size, cfg.seed + 51,
                                                                   cfg.tie_margin, cfg.sampling, run.log)
            write_parquet(held, tmp / "prefs_held_out.parquet")
    if "exemplars" in stages:
        with run.stage("exemplars"):
            write_parquet(exemplar_table(world, cfg.exemplars_per_prompt, cfg.seed + 60), tmp / "exemplars.parquet")
            (tmp / "prompts.json").write_text(json.dumps(
                {"train": world.train_prompts, "held_out": world.held_out_prompts,
                 "held_out_triples": [[c, s, b] for (c, s), b in world.held_out_triples.items()]}, indent=1))


def main(argv: list[str] | None = None) -> dict:
    """`python -m diffalign.toy.image.build [--out DIR] [--seed N] [--quick] [--threads N] [--only S,S]`."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="seconds-long build of every stage (for tests)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--only", help=f"re-run some of {','.join(AFTER_PRETRAINING)} on the finished build in --out")
    args = parser.parse_args(argv)
    only = args.only.split(",") if args.only else None
    return build_image_world(args.out, build_config(args.out, args.seed, args.quick, args.threads, only), only)


def build_config(out: Path, seed: int, quick: bool, threads: int, only: list[str] | None) -> ImageBuildConfig:
    """The settings of a command-line build: recorded ones for ``--only``, else quick or default ones."""
    if only:
        from diffalign.toy.common import read_json

        cfg = ImageBuildConfig.from_info(read_json(Path(out) / "build_info.json"))
    else:
        cfg = ImageBuildConfig.quick(seed) if quick else ImageBuildConfig(seed=seed)
    cfg.threads = threads
    return cfg


if __name__ == "__main__":
    main()
