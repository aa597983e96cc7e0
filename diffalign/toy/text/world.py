"""Toy text world: a byte-level tokenizer and a synthetic preference set for text DPO.

Prompts ask for a reply to a short statement; the chosen reply is kind and on topic, the
rejected one is curt or rude. Train and held-out sets use disjoint topics, so held-out reward
accuracy measures generalisation, not memorisation. Regenerate with::

    python -m diffalign.toy.text.world assets/text
"""

from __future__ import annotations

import json
import random
import sys
from pathlib import Path

__all__ = ["build_tokenizer", "make_pairs", "build"]

SUBJECTS = ["my cat", "the dog", "our team", "my sister", "the baby", "my friend", "the old man", "our teacher",
            "the bird", "my boss", "the cook", "her brother", "the farmer", "my uncle", "the pilot", "our neighbour"]
VERBS = ["found", "lost", "baked", "painted", "fixed", "sold", "built", "broke", "cleaned", "bought", "won", "hid"]
OBJECTS = ["a cake", "the car", "a kite", "the fence", "a boat", "the lamp", "a song", "the bike", "a garden",
           "the clock", "a poem", "the chair", "a map", "the door"]
KIND_OPEN = ["Thanks for telling me!", "How lovely!", "That is great news!", "Oh, wonderful!", "What a nice story!"]
KIND_CLOSE = ["I hope you are well.", "Please tell me more.", "Have a good day.", "That made me smile."]
RUDE_OPEN = ["Who cares.", "Boring.", "So what?", "Not again.", "Stop talking."]
RUDE_CLOSE = ["Go away.", "I do not care.", "Whatever.", "Leave me alone."]


def build_tokenizer(out: Path):
    """Write a byte-level BPE tokenizer (256 byte symbols + 4 specials, no merges) to ``out``.

    Returns:
        transformers.PreTrainedTokenizerFast: the tokenizer, reloadable offline with
        ``AutoTokenizer.from_pretrained(out)``.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    specials = ["<pad>", "<s>", "</s>", "<unk>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {t: i for i, t in enumerate(specials + sorted(alphabet))}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[], unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        model_max_length=512,
    )
    fast.save_pretrained(out)
    return fast


def make_pairs(n: int, subjects: list[str], rng: random.Random) -> list[dict]:
    """``n`` rows ``{"prompt", "chosen", "rejected"}`` about the given subjects."""
    rows = []
    for _ in range(n):
        s, v, o = rng.choice(subjects), rng.choice(VERBS), rng.choice(OBJECTS)
        prompt = f"Reply to: {s} {v} {o}.\nReply:"
        chosen = f" {rng.choice(KIND_OPEN)} {rng.choice(KIND_CLOSE)}"
        rejected = f" {rng.choice(RUDE_OPEN)} {rng.choice(RUDE_CLOSE)}"
        rows.append({"prompt": prompt, "chosen": chosen, "rejected": rejected})
    return rows


def build(out: Path, n_train: int = 2000, n_eval: int = 200, seed: int = 0) -> None:
    """Write ``tokenizer/``, ``toy_prefs/train.jsonl`` and ``toy_prefs/eval.jsonl`` under ``out``.

    Held-out rows use subjects that never occur in training.
    """
    out = Path(out)
    rng = random.Random(seed)
    build_tokenizer(out / "tokenizer")
    held = SUBJECTS[-4:]
    (out / "toy_prefs").mkdir(parents=True, exist_ok=True)
    for name, n, subj in [("train", n_train, SUBJECTS[:-4]), ("eval", n_eval, held)]:
        with open(out / "toy_prefs" / f"{name}.jsonl", "w") as f:
            for row in make_pairs(n, subj, rng):
                f.write(json.dumps(row) + "\n")


if __name__ == "__main__":
    build(Path(sys.argv[1] if len(sys.argv) > 1 else "assets/text"))
