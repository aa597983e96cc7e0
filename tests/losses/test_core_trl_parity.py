"""Parity with TRL's DPOTrainer (runs when trl is installed; the dev extra installs it).

Same tiny Llama, same collated batch (TRL's own collator), same β: our loss core plus our
sequence scores must reproduce TRL's loss and logged metrics within 1e-5.

Known, deliberate difference — IPO: TRL divides each log-ratio by the number of completion
tokens (counted on the *unshifted* completion mask) before the paper's Eq. 17; our ``ipo``
kind is the paper form on summed scores. The test feeds our ``ipo`` length-normalised scores
to reproduce TRL's variant, and checks that the plain paper form differs.
"""

import copy
import json
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl")

from diffalign.losses import LossParams, PreferenceBatch, preference_loss  # noqa: E402
from diffalign.losses.sequence import sequence_logps  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
BETA, EPS = 0.1, 0.2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from datasets import Dataset
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(ROOT / "assets/text/tokenizer")
    torch.manual_seed(0)
    conf = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       pad_token_id=tok.pad_token_id, eos_token_id=tok.eos_token_id, bos_token_id=tok.bos_token_id)
    ref = LlamaForCausalLM(conf)
    policy = copy.deepcopy(ref)
    with torch.no_grad():  # make the policy differ from the reference so the losses are not all log 2
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
    rows = [json.loads(x) for x in (ROOT / "assets/text/toy_prefs/train.jsonl").read_text().splitlines()[:8]]
    ds = Dataset.from_list(rows)
    return tok, policy, ref, ds, tmp_path_factory.mktemp("trl")


def trl_step(setup, loss_type):
    tok, policy, ref, ds, tmp = setup
    args = trl.DPOConfig(
        output_dir=str(tmp), beta=BETA, loss_type=[loss_type], label_smoothing=EPS if loss_type == "robust" else 0.0,
        per_device_train_batch_size=8, gradient_checkpointing=False, bf16=False, fp16=False, report_to=[],
        use_cpu=True, disable_dropout=True, max_length=128, dataset_num_proc=None,
    )
    trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=tok)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    with torch.no_grad():
        loss = trainer.compute_loss(trainer.model, batch)
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return batch, loss, metrics, trainer.model, trainer.ref_model


@pytest.mark.parametrize("kind", ["sigmoid", "ipo", "hinge", "robust"])
def test_loss_and_metrics_match_trl(setup, kind):
    batch, trl_loss, trl_m, model, ref_model = trl_step(setup, kind)
    args = (batch["input_ids"], batch["attention_mask"], batch["completion_mask"])
    with torch.no_grad():
        pol = sequence_logps(model, *args)
        refs = sequence_logps(ref_model, *args)
    n = pol.logps.shape[0] // 2
    w, l, rw, rl = pol.logps[:n], pol.logps[n:], refs.logps[:n], refs.logps[n:]
    params = LossParams(beta=BETA, label_smoothing=EPS if kind == "robust" else 0.0)
    if kind == "ipo":  # TRL's length-normalised IPO (see module docstring)
        lens = batch["completion_mask"].sum(1).float()
        norm = PreferenceBatch(w / lens[:n], l / lens[n:], rw / lens[:n], rl / lens[n:])
        ours = preference_loss(norm, "ipo", params)
        paper = preference_loss(PreferenceBatch(w, l, rw, rl), "ipo", params)
        assert abs(paper.loss.item() - trl_loss.item()) > 1e-3  # the paper form is a different number
    else:
        ours = preference_loss(PreferenceBatch(w, l, rw, rl), kind, params)
    assert ours.loss.item() == pytest.approx(trl_loss.item(), abs=1e-5)
    logged = preference_loss(PreferenceBatch(w, l, rw, rl), kind, params).metrics  # rewards use raw r, as TRL
    for key in ["rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies"]:
        assert logged[key].item() == pytest.approx(trl_m[key], abs=1e-5), key
    # summed log-probs of ~−230: fp32 summation order differs, so compare relatively (1e-7 ≈ fp32 epsilon)
    assert w.mean().item() == pytest.approx(trl_m["logps/chosen"], rel=1e-6)
    assert l.mean().item() == pytest.approx(trl_m["logps/rejected"], rel=1e-6)
    assert 0.0 < trl_m["rewards/accuracies"] < 1.0 or kind != "sigmoid"  # a non-degenerate batch
