"""Text DPO trainer: scores, reference strategies, invariants, resume, data errors."""

import math

import pytest
import torch

from diffalign.data.text import collate_pairs
from diffalign.losses.sequence import sequence_logps
from diffalign.train.text import TextDPOTrainer


def full_route_logps(model, batch):
    """Reference implementation: full logits, full log_softmax, masked sum."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits[:, :-1]
    lp = torch.log_softmax(logits.float(), -1).gather(-1, batch["input_ids"][:, 1:, None]).squeeze(-1)
    return (lp * batch["completion_mask"][:, 1:]).sum(-1)


@pytest.mark.parametrize("lora", [False, True])
def test_sequence_logps_equals_full_log_softmax(text_cfg, lora):
    cfg = text_cfg(model={"lora": {"r": 4, "alpha": 4, "init": "gaussian"}} if lora else {},
                   reference={"strategy": "adapter_off" if lora else "frozen_copy"})
    tr = TextDPOTrainer(cfg)
    batch = collate_pairs(tr.train_pairs[:3], tr.tokenizer.pad_token_id)
    ours = sequence_logps(tr.model, batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    torch.testing.assert_close(ours.logps, full_route_logps(tr.model, batch), rtol=1e-5, atol=1e-4)
    assert ours.n_tokens.tolist() == batch["completion_mask"][:, 1:].sum(-1).tolist()


@pytest.mark.parametrize("strategy", ["precomputed", "frozen_copy", "adapter_off"])
def test_step0_log2_reference_unchanged_policy_changes(text_cfg, strategy):
    lora = {"r": 4, "alpha": 4, "init": "gaussian"} if strategy == "adapter_off" else None
    cfg = text_cfg(model={"lora": lora}, reference={"strategy": strategy}, train={"max_steps": 2})
    tr = TextDPOTrainer(cfg)
    batch = collate_pairs(tr.train_pairs[:4], tr.tokenizer.pad_token_id)
    out, _ = tr.compute_loss(batch)
    assert out.loss.item() == pytest.approx(math.log(2), abs=1e-5)  # policy = reference at step 0
    ref_before = tr.reference_logps(batch).clone()
    frozen = {n: p.detach().clone() for n, p in tr.model.named_parameters() if not p.requires_grad}
    trainable = {n: p.detach().clone() for n, p in tr.model.named_parameters() if p.requires_grad}
    tr.train()
    torch.testing.assert_close(tr.reference_logps(batch), ref_before)  # reference unchanged
    for n, p in tr.model.named_parameters():
        if n in frozen:
            assert torch.equal(p, frozen[n]), f"frozen {n} changed"
    changed = [n for n, p in tr.model.named_parameters() if n in trainable and not torch.equal(p, trainable[n])]
    assert len(changed) == len(trainable), "every trainable parameter should move"
    if tr.ref_model is not None:
        assert not any(p.requires_grad for p in tr.ref_model.parameters())


def test_training_raises_heldout_reward_accuracy(text_cfg):
    tr = TextDPOTrainer(text_cfg(train={"max_steps": 12, "batch_size": 8}))
    tr.train()
    ev = tr.evaluate()
    assert ev["n"] == 16 and ev["reward_accuracy"] > 0.8 and ev["reward_margin"] > 0


def test_precomputed_reference_is_cached(text_cfg, tmp_path):
    cfg = text_cfg(reference={"cache_dir": str(tmp_path / "refcache")})
    TextDPOTrainer(cfg)
    files = list((tmp_path / "refcache").glob("*.safetensors"))
    assert len(files) == 2  # train and eval
    tr = TextDPOTrainer(cfg)  # cache hit: same values
    batch = collate_pairs(tr.train_pairs[:2], tr.tokenizer.pad_token_id)
    torch.testing.assert_close(tr.reference_logps(batch), sequence_logps(tr.model, *[batch[k] for k in ("input_ids", "attention_mask", "completion_mask")]).logps)


def test_reference_free_kind_needs_no_reference(text_cfg):
    tr = TextDPOTrainer(text_cfg(loss={"kinds": {"simpo": 1.0}, "beta": 2.0}))
    assert tr.strategy == "none"
    out, _ = tr.compute_loss(collate_pairs(tr.train_pairs[:2], tr.tokenizer.pad_token_id))
    assert torch.isfinite(out.loss)


def test_resume_reproduces_uninterrupted_run(text_cfg, tmp_path):
    loop = {"max_steps": 5, "lr_schedule": "cosine", "warmup_steps": 1, "save_every": 1}
    straight = TextDPOTrainer(text_cfg(train={**loop, "output_dir": str(tmp_path / "a")}))
    straight.train()
    interrupted = TextDPOTrainer(text_cfg(train={**loop, "output_dir": str(tmp_path / "b")}))
    interrupted.train(until=2)  # as if killed after the step-2 checkpoint
    assert (tmp_path / "b" / "checkpoint-00000002" / "COMPLETE").exists()
    resumed = TextDPOTrainer(text_cfg(train={**loop, "resume": "latest", "output_dir": str(tmp_path / "b")}))
    resumed.train()
    for (n, p), (_, q) in zip(straight.model.named_parameters(), resumed.model.named_parameters()):
        assert torch.equal(p, q), n


def test_bad_row_names_file_row_and_column(text_cfg, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "chosen": "b", "rejected": "c"}\n{"prompt": "a", "chosen": 3, "rejected": "c"}\n')
    with pytest.raises(ValueError, match=r"bad.jsonl: row 1: column 'chosen'"):
        TextDPOTrainer(text_cfg(data={"train": str(bad), "eval": None}))
    tr = TextDPOTrainer(text_cfg(data={"train": str(bad), "eval": None, "on_bad_row": "skip"}))
    assert len(tr.train_pairs) == 1


def test_accumulation_invariant(text_cfg, tmp_path):
    """batch 4 × accumulation 1 ≡ batch 2 × accumulation 2 (same pairs, same order)."""
    a = TextDPOTrainer(text_cfg(train={"max_steps": 2, "batch_size": 4, "grad_accum": 1, "output_dir": str(tmp_path / "a")}))
    a.train()
    b = TextDPOTrainer(text_cfg(train={"max_steps": 2, "batch_size": 2, "grad_accum": 2, "output_dir": str(tmp_path / "b")}))
    b.train()
    for (n, p), (_, q) in zip(a.model.named_parameters(), b.model.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6, msg=n)
