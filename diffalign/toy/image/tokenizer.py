"""A tiny byte-level CLIP tokenizer, written from local files, in which every toy word is one token.

The vocabulary is the 256 GPT-2 byte characters, the same with `</w>`, the merges that build each
toy word (learned greedily, like BPE training, on the word list so that BPE encoding reproduces
one token per word) and `<|startoftext|>`, `<|endoftext|>` last, so `<|endoftext|>` has the
highest id (open_clip's `argmax` pooling relies on that). Any other text still tokenizes, byte
by byte. See reference/environment.md §9 for the loading traps this avoids.

Example:
    >>> folder = write_vocab(tmp_dir, words=["red", "circle"])
    >>> tok = CLIPTokenizer.from_pretrained(folder, model_max_length=16)
"""

from __future__ import annotations

import json
from pathlib import Path

from diffalign.rewards._tokenizers import byte_level_chars
from diffalign.toy.common import learn_merges


def write_vocab(folder: str | Path, words: list[str]) -> Path:
    """Writes `vocab.json` and `merges.txt` for a CLIP tokenizer with the words as single tokens.

    Args:
        folder (str | Path): output folder (created).
        words (list[str]): words that must each become one token.

    Returns:
        Path: the folder; load it with `CLIPTokenizer.from_pretrained(folder, model_max_length=N)`.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    chars = byte_level_chars()
    merges = learn_merges({w: [*w[:-1], w[-1] + "</w>"] for w in {w.lower() for w in words}})
    toks = chars + [c + "</w>" for c in chars] + ["".join(m) for m in merges]
    toks += ["<|startoftext|>", "<|endoftext|>"]
    (folder / "vocab.json").write_text(json.dumps({t: i for i, t in enumerate(toks)}, ensure_ascii=False))
    lines = ["#version: 0.2"] + [f"{a} {b}" for a, b in merges]
    (folder / "merges.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def toy_words() -> list[str]:
    """Every word of the shapes grammar."""
    from diffalign.toy.image.world import BACKGROUNDS, COLOURS, SHAPES, SIZES

    return ["a", "on", "background", *COLOURS, *SHAPES, *BACKGROUNDS, *SIZES]


def build_tokenizer(folder: str | Path, model_max_length: int = 16):
    """Writes the toy vocabulary and loads it as a `CLIPTokenizer`.

    Args:
        folder (str | Path): where vocab.json / merges.txt go.
        model_max_length (int): padding length of the pipeline's prompts; the longest grammar
            prompt is 10 tokens with <|startoftext|> and <|endoftext|>. Default is 16.

    Returns:
        transformers.CLIPTokenizer: with `len(tokenizer) > 5` checked.
    """
    from transformers import CLIPTokenizer

    write_vocab(folder, toy_words())
    tok = CLIPTokenizer.from_pretrained(str(folder), model_max_length=model_max_length)
    if len(tok) <= 5:  # transformers silently returns an empty tokenizer on some failures
        raise RuntimeError(f"toy tokenizer in {folder} did not load (len {len(tok)})")
    return tok
