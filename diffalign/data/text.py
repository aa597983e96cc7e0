"""Text preference pairs: reading (JSONL, parquet, local HF datasets), checking, tokenising
and collating into the concatenated ``[prompt+chosen; prompt+rejected]`` layout."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import torch

__all__ = ["read_rows", "file_fingerprint", "TokenizedPair", "tokenize_pairs", "collate_pairs"]


def read_rows(path: str | Path) -> list[dict]:
    """Rows of a ``.jsonl`` / ``.json`` / ``.parquet`` file or a ``datasets.save_to_disk`` folder."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"data file {path} does not exist")
    if path.is_dir():
        import datasets

        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            raise ValueError(
                f"{path} holds several splits ({', '.join(ds)}); point at one split folder, e.g. {path}/train"
            )
        return ds.to_list()
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()
    if path.suffix in (".jsonl", ".json"):
        rows = []
        with open(path) as f:
            for i, line in enumerate(f):
                if line.strip():
                    try:
                        rows.append(json.loads(line))
                    except json.JSONDecodeError as e:
                        raise ValueError(f"{path}: row {i}: not valid JSON ({e.msg})") from None
        return rows
    raise ValueError(f"{path}: unsupported data format (use .jsonl, .parquet or a datasets folder)")


def file_fingerprint(path: str | Path) -> str:
    """sha256 of a file (or of every file in a folder), for cache keys."""
    path, h = Path(path), hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for p in files:
        h.update(p.name.encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@dataclass
class TokenizedPair:
    """One pair as token ids: prompt, chosen and rejected completions (each ending in EOS).

    ``index`` is the pair's position among the kept pairs (bad rows skipped).
    """

    index: int
    prompt: list[int]
    chosen: list[int]
    rejected: list[int]


def _truncate(prompt: list[int], completion: list[int], max_length: int) -> tuple[list[int], list[int]]:
    completion = completion[: max(1, max_length - 1)]  # keep the completion's start
    room = max_length - len(completion)
    return (prompt[-room:] if room > 0 else []), completion  # keep the prompt's end


def tokenize_pairs(
    rows: list[dict],
    tokenizer,
    source: str,
    columns: tuple[str, str, str] = ("prompt", "chosen", "rejected"),
    max_length: int = 512,
    max_prompt_length: int | None = None,
    on_bad_row: str = "error",
) -> tuple[list[TokenizedPair], int]:
    """Check and tokenise rows. BOS (if the tokenizer has one) starts the prompt; EOS ends
    each completion.

    Returns:
        (pairs, skipped): the tokenised pairs and the number of bad rows skipped.

    Raises:
        ValueError: a bad row (missing / empty / non-string column) when ``on_bad_row`` is
            ``error``; the message names the file, row and column.
    """
    pairs, skipped = [], 0
    bos, eos = tokenizer.bos_token_id, tokenizer.eos_token_id
    if eos is None:
        raise ValueError("the tokenizer has no EOS token; set one (tokenizer.eos_token)")
    for i, row in enumerate(rows):
        bad = next((c for c in columns if not isinstance(row.get(c), str) or not row.get(c)), None)
        if bad is not None:
            if on_bad_row == "skip":
                skipped += 1
                continue
            got = "missing" if bad not in row else f"{type(row[bad]).__name__} {row[bad]!r}"[:60]
            raise ValueError(f"{source}: row {i}: column {bad!r}: expected a non-empty string, got {got}")
        p, c, r = (tokenizer(row[k], add_special_tokens=False)["input_ids"] for k in columns)
        head = [bos] if bos is not None else []  # BOS survives truncation of the prompt
        if max_prompt_length is not None:
            p = p[-max(0, max_prompt_length - len(head)) :]
        pc, c = _truncate(p, c + [eos], max_length - len(head))
        pr, r = _truncate(p, r + [eos], max_length - len(head))
        n = min(len(pc), len(pr))  # one prompt for both halves
        pairs.append(TokenizedPair(len(pairs), head + (p[len(p) - n :] if n else []), c, r))
    return pairs, skipped


def collate_pairs(pairs: list[TokenizedPair], pad_id: int) -> dict[str, torch.Tensor]:
    """Right-padded ``[prompt+chosen; prompt+rejected]`` rows (``2B`` of them).

    Returns:
        dict: ``input_ids``, ``attention_mask``, ``completion_mask`` (``[2B, T]``) and
        ``index`` (``[B]`` dataset row ids, for precomputed reference scores).
    """
    seqs = [(p.prompt, p.chosen) for p in pairs] + [(p.prompt, p.rejected) for p in pairs]
    t = max(len(a) + len(b) for a, b in seqs)
    ids = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    attn = torch.zeros((len(seqs), t), dtype=torch.long)
    comp = torch.zeros((len(seqs), t), dtype=torch.long)
    for i, (a, b) in enumerate(seqs):
        n = len(a) + len(b)
        ids[i, :n] = torch.tensor(a + b)
        attn[i, :n] = 1
        comp[i, len(a) : n] = 1
    return {
        "input_ids": ids,
        "attention_mask": attn,
        "completion_mask": comp,
        "index": torch.tensor([p.index for p in pairs]),
    }
