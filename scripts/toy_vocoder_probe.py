"""Probe a toy-world vocoder setting without rebuilding the tones assets.

Trains a fresh ``SpeechT5HifiGan`` (``diffalign/toy/audio/pretrain.py``) on the true log-mels of
rendered clips, then sends held-out renders through mel → vocoder and reads them with
``toy_audio_judge``: band and timbre accuracy, overall and per band (the build's own ``_per_band``). This is how the README's
"What the vocoder does wrong" rows were measured.

Usage (run alone: the machine has 2 cores)::

    python scripts/toy_vocoder_probe.py --set initial_channels=128 steps=3000
    python scripts/toy_vocoder_probe.py --set initial_channels=128 steps=3000 adv_weight=0.1 adv_start=500
    python scripts/toy_vocoder_probe.py --n-mels 64 --set initial_channels=128 steps=3000

``--set`` takes ``VocoderConfig`` fields (YAML values). ``--save DIR`` keeps the vocoder.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from dataclasses import replace

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="VocoderConfig overrides")
    ap.add_argument("--clips", type=int, default=3000, help="rendered training clips")
    ap.add_argument("--per-prompt", type=int, default=3, help="held-out renders per held-out prompt")
    ap.add_argument("--n-mels", type=int, default=None, help="another number of mel bands (0-8 kHz)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--save", default=None, help="folder for the trained vocoder")
    args = ap.parse_args(argv)

    import torch
    import yaml

    import diffalign.toy.audio.pretrain as at
    import diffalign.toy.audio.world as world_mod
    from diffalign.toy.audio.build import _per_band
    from diffalign.toy.audio.judge import judge_clips
    from diffalign.toy.audio.world import BANDS, TIMBRES, TonesWorld, parse_prompt

    torch.set_num_threads(args.threads)
    if args.n_mels:  # the mel front-end and the vocoder's input width, for this process only
        world_mod._FB["cpu"] = world_mod.mel_filterbank(n_mels=args.n_mels)
        at.N_MELS = args.n_mels
    kw = {}
    for item in args.set:
        k, _, v = item.partition("=")
        val = yaml.safe_load(v)
        kw[k] = tuple(val) if isinstance(val, list) else val
    cfg = replace(at.VocoderConfig(), **kw, vae_input_share=0.0)

    world = TonesWorld()
    waves, mels = at.render_mels(world, world.sample_training_prompts(args.clips, 1), 2)
    check = [p for p in world.held_out_prompts for _ in range(args.per_prompt)]
    render_waves, check_mels = at.render_mels(world, check, 3)
    voc = at.make_vocoder(cfg, mels.mean(dim=(0, 1)), mels.std(dim=(0, 1)), 20)
    t0 = time.time()
    stats = at.train_vocoder(voc, None, waves, mels, cfg, 21, log=lambda s: None)
    seconds = time.time() - t0
    if args.save:
        voc.save_pretrained(args.save)
    got = judge_clips(at.vocode(voc, check_mels))
    want = [parse_prompt(p) for p in check]
    band_ok = got["band"] == torch.tensor([list(BANDS).index(w.band) for w in want])
    true_t = torch.tensor([TIMBRES.index(w.timbre) for w in want])
    timbre_ok = got["timbre"] == true_t
    confusion = {t: {u: int(((true_t == i) & (got["timbre"] == j)).sum()) for j, u in enumerate(TIMBRES)}
                 for i, t in enumerate(TIMBRES)}  # rows: the prompt's timbre; columns: the judge's verdict
    truth = judge_clips(render_waves)
    square_r3 = {b: [round(float(g["r3"][[i for i, w in enumerate(want) if w.band == b and w.timbre == "square"]].mean()), 3)
                     for g in (truth, got)] for b in BANDS}  # partial 3 / partial 1 of squares: renders vs vocoded
    print(json.dumps({"vocoder": vars(cfg), "n_mels": args.n_mels or world_mod.N_MELS,
                      "train_seconds": round(seconds, 1), "loss": round(stats["loss"], 3), "clips": len(check),
                      "band": _per_band(band_ok, check), "timbre": _per_band(timbre_ok, check),
                      "timbre_confusion": confusion, "square_r3_render_vs_vocoded": square_r3}))


if __name__ == "__main__":
    main()
