"""In-memory tokenizers for random-weight (``weights=None``) builds: no files, no hub.

Byte-level vocabularies (GPT-2's 256-character byte alphabet, no merges) tokenise any text into
characters, which is all a random tiny model needs. Loading a tokenizer by hub name offline returns an
*empty* tokenizer in transformers 5 (reference/environment.md §8), so real-weights builds read local
files and every builder asserts ``len(tokenizer) > 5``.
"""

from __future__ import annotations

import string
from typing import Any

__all__ = ["byte_level_chars", "check_tokenizer", "tiny_bert_tokenizer", "tiny_clip_tokenizer", "tiny_roberta_tokenizer"]


def byte_level_chars() -> list[str]:
    """GPT-2's printable stand-ins for the 256 byte values (``bytes_to_unicode``)."""
    bs = [*range(33, 127), *range(161, 173), *range(174, 256)]
    cs, n = bs[:], 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return [chr(c) for c in cs]


def check_tokenizer(tokenizer: Any, where: str) -> Any:
    """Refuses the silently empty tokenizers transformers 5 returns offline."""
    if len(tokenizer) <= 5:
        raise OSError(f"tokenizer from {where} is empty ({len(tokenizer)} tokens): provide its vocabulary files locally")
    return tokenizer


def tiny_clip_tokenizer(max_length: int = 77):
    """``CLIPTokenizer`` over 514 byte-level tokens (ids 512/513 = start/end of text)."""
    from transformers import CLIPTokenizer

    chars = byte_level_chars()
    toks = chars + [c + "</w>" for c in chars] + ["<|startoftext|>", "<|endoftext|>"]
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(toks)}, merges=[], model_max_length=max_length)


def tiny_roberta_tokenizer(max_length: int = 77):
    """``RobertaTokenizer`` over 261 tokens: ``<s> <pad> </s> <unk>``, 256 bytes, ``<mask>``."""
    from transformers import RobertaTokenizer

    toks = ["<s>", "<pad>", "</s>", "<unk>", *byte_level_chars(), "<mask>"]
    return RobertaTokenizer(vocab={t: i for i, t in enumerate(toks)}, merges=[], model_max_length=max_length)


def tiny_bert_tokenizer(max_length: int = 512):
    """Uncased ``BertTokenizer`` over special tokens, ASCII characters and ``##`` continuations (111 tokens)."""
    from transformers import BertTokenizer

    chars = string.ascii_lowercase + string.digits
    toks = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *chars, *string.punctuation, *("##" + c for c in chars)]
    return BertTokenizer(vocab={t: i for i, t in enumerate(toks)}, model_max_length=max_length)
