"""Text preference data: formats, truncation, collation."""

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer

from diffalign.data.text import collate_pairs, read_rows, tokenize_pairs

ROOT = Path(__file__).resolve().parents[2]
ROWS = [{"prompt": "Reply to: the dog won a map.\nReply:", "chosen": " How lovely!", "rejected": " Boring."},
        {"prompt": "Reply to: my cat hid the lamp.\nReply:", "chosen": " Oh, wonderful! Have a good day.", "rejected": " So what?"}]


@pytest.fixture(scope="module")
def tok():
    t = AutoTokenizer.from_pretrained(ROOT / "assets/text/tokenizer")
    assert len(t) > 5
    return t


def test_jsonl_parquet_and_datasets_folder_read_the_same(tmp_path):
    import datasets
    import pyarrow as pa
    import pyarrow.parquet as pq

    (tmp_path / "a.jsonl").write_text("\n".join(json.dumps(r) for r in ROWS) + "\n")
    pq.write_table(pa.Table.from_pylist(ROWS), tmp_path / "a.parquet")
    datasets.Dataset.from_list(ROWS).save_to_disk(str(tmp_path / "ds"))
    assert read_rows(tmp_path / "a.jsonl") == read_rows(tmp_path / "a.parquet") == read_rows(tmp_path / "ds") == ROWS
    datasets.DatasetDict({"train": datasets.Dataset.from_list(ROWS)}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(ValueError, match="several splits .* point at one split folder"):
        read_rows(tmp_path / "dd")
    (tmp_path / "b.jsonl").write_text('{"prompt": "x"}\n{oops\n')
    with pytest.raises(ValueError, match=r"b.jsonl: row 1: not valid JSON"):
        read_rows(tmp_path / "b.jsonl")


def test_tokenize_adds_bos_eos_and_truncates(tok):
    pairs, skipped = tokenize_pairs(ROWS, tok, "<rows>", max_length=30)
    assert skipped == 0
    full, _ = tokenize_pairs(ROWS, tok, "<rows>", max_length=512)
    for p in full:
        assert p.chosen[-1] == tok.eos_token_id and p.rejected[-1] == tok.eos_token_id
    for p in pairs:
        assert p.prompt[0] == tok.bos_token_id  # BOS survives truncation
        assert len(p.prompt) + len(p.chosen) <= 30 and len(p.prompt) + len(p.rejected) <= 30
    # the completion keeps its start (EOS may be cut, as TRL's keep_start), the prompt keeps its end
    assert pairs[1].chosen[:5] == full[1].chosen[:5]
    kept = len(pairs[1].prompt) - 1  # after BOS
    assert pairs[1].prompt[1:] == full[1].prompt[len(full[1].prompt) - kept:]


def test_collate_layout(tok):
    pairs, _ = tokenize_pairs(ROWS, tok, "<rows>")
    b = collate_pairs(pairs, tok.pad_token_id)
    assert b["input_ids"].shape[0] == 4 and b["index"].tolist() == [0, 1]
    # row i is prompt+chosen of pair i, row B+i prompt+rejected; completion mask covers the completion only
    for i, p in enumerate(pairs):
        for row, comp in [(i, p.chosen), (2 + i, p.rejected)]:
            n = len(p.prompt) + len(comp)
            assert b["input_ids"][row, :n].tolist() == p.prompt + comp
            assert b["completion_mask"][row].sum().item() == len(comp)
            assert b["attention_mask"][row].sum().item() == n
    assert torch.all(b["input_ids"][b["attention_mask"] == 0] == tok.pad_token_id)
