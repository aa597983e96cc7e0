"""Scale of NCP feature distances against latent errors on a config's data, at initialisation.

For each encoder level and target mode of ``method.space`` it prints the mean feature distance, the
mean |d(chosen) − d(rejected)| over the first ``--pairs`` training pairs (one shared t, ε per pair,
the config's t range), the same for the latent ε-MSE, and their ratio: multiply the latent recipe's β
by the ratio to keep its margin scale (what configs/toy/ncp_dpo.yaml does)::

    python scripts/ncp_margin_scale.py --config configs/toy/diffusion_dpo.yaml
"""

from __future__ import annotations

import argparse
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--config", default="configs/toy/diffusion_dpo.yaml")
    ap.add_argument("--pairs", type=int, default=32)
    args = ap.parse_args(argv)

    import torch

    from diffalign.losses.denoising import LatentDistance, noise_pairs
    from diffalign.methods.base import SpaceConfig
    from diffalign.methods.diffusion_dpo import make_distance
    from diffalign.models.denoiser import Denoiser
    from diffalign.train import load_config
    from diffalign.train.offline import DiffusionTrainer

    cfg = load_config(args.config, ["train.output_dir=outputs/ncp_margin_scale"])
    torch.set_num_threads(cfg.train.num_threads or 2)
    tr = DiffusionTrainer(cfg)
    batch = tr.batcher.make_batch(tr.batcher.positions[: args.pairs], 0)
    policy, n = Denoiser(tr.unet), len(batch)
    print(f"{'level':6s} {'target':8s} {'mean d':>10s} {'mean |Δd|':>10s} {'latent |Δ|':>10s} {'ratio':>8s}")
    for level in ("mid", "down", "multi"):
        for target in ("t-1", "uniform", "x0", "direct"):
            dist = make_distance(SpaceConfig("unet", level, target), tr.comp)
            torch.manual_seed(cfg.train.seed)
            noised = noise_pairs(tr.comp.scheduler, batch.chosen, batch.rejected, tr.method.t_range,
                                 tr.comp.prediction_type)
            dist.prepare(noised, batch.cond)
            with torch.no_grad():
                pred = policy(noised.x_t, noised.t, batch.cond)
                d, lat = dist(pred, noised, batch.cond), LatentDistance()(pred, noised, batch.cond)
            dd, dl = (d[:n] - d[n:]).abs().mean(), (lat[:n] - lat[n:]).abs().mean()
            print(f"{level:6s} {target:8s} {float(d.mean()):10.3e} {float(dd):10.3e} {float(dl):10.3e} {float(dl / dd):8.3g}")


if __name__ == "__main__":
    main()
