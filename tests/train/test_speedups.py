"""The CPU training speed-ups change no result: per-sequence attention, lane dropout, trained-positions loss."""

from __future__ import annotations

import pytest
import torch

from tests.conftest import run_cli
from tests.train.helpers import SHORT_RUN, only_run, train_losses, write_sft_data


def _load(path, impl: str):
    from transformers import AutoModelForCausalLM

    from lmforge.train.attention import register

    register()
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32, attn_implementation=impl)
    model.config.use_cache = False
    return model.train()


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen3"])
def test_segment_attention_equals_each_sequence_alone(fixture, request):
    path = request.getfixturevalue(fixture)
    model = _load(path, "segments")
    torch.manual_seed(0)
    lengths = [7, 300, 40]  # 300 > EAGER_MAX takes the sdpa branch
    ids = torch.randint(0, 1000, (1, sum(lengths)))
    pos = torch.cat([torch.arange(n) for n in lengths])[None]
    flat = model(input_ids=ids, position_ids=pos).logits
    starts = [0, 7, 307, 347]
    alone = torch.cat([model(input_ids=ids[:, s:e]).logits for s, e in zip(starts, starts[1:])], dim=1)
    assert (flat - alone).abs().max().item() < 1e-4
    padded = torch.zeros(2, 40, dtype=torch.long)
    padded[0, :7], padded[1] = ids[0, :7], ids[0, 307:]
    mask = torch.zeros(2, 40, dtype=torch.long)
    mask[0, :7], mask[1] = 1, 1
    out = model(input_ids=padded, attention_mask=mask).logits  # padded batches take transformers' sdpa path
    assert (out[0, :7] - alone[0, :7]).abs().max().item() < 1e-4
    assert (out[1] - alone[0, 307:]).abs().max().item() < 1e-4


def test_lane_dropout_rate_gradient_and_seed():
    from lmforge.tuners.dropout import LaneDropout

    drop = LaneDropout(0.1).train()
    x = torch.ones(1000, 512, requires_grad=True)
    torch.manual_seed(1)
    y = drop(x)
    assert abs((y == 0).float().mean().item() - 0.1) < 0.003
    assert torch.allclose(y[y != 0], torch.tensor(1 / 0.9))
    y.sum().backward()
    assert torch.equal(x.grad, (y != 0).float() / 0.9)
    torch.manual_seed(1)
    assert torch.equal(drop(x), y)  # reproducible from the global seed, as nn.Dropout
    assert torch.equal(drop.eval()(x), x)


def test_trained_positions_loss_equals_transformers_loss(tiny_llama, tmp_path):
    from transformers import TrainingArguments

    from lmforge.train.trainer import LmforgeTrainer

    model = _load(tiny_llama, "segments")
    args = TrainingArguments(output_dir=str(tmp_path), use_cpu=True, report_to="none")
    trainer = LmforgeTrainer(model=model, args=args)
    torch.manual_seed(0)
    ids = torch.randint(0, 1000, (2, 12))
    labels = ids.clone()
    labels[0, :5] = labels[1, :8] = -100
    batch = {"input_ids": ids, "labels": labels}
    for items in (None, torch.tensor(9)):
        ours = trainer.compute_loss(model, dict(batch), num_items_in_batch=items)
        theirs = model(**batch, **({"num_items_in_batch": items} if items is not None else {})).loss
        assert abs(ours.item() - theirs.item()) < 1e-5


def test_padding_free_trains_as_padded(tiny_llama, tmp_path):
    data = write_sft_data(tmp_path / "d.jsonl")
    losses = {}
    for flat in ("true", "false"):
        out = tmp_path / flat
        r = run_cli(
            "sft", "--model", str(tiny_llama), "--dataset", str(data), "--output_dir", str(out),
            "--torch_dtype", "float32", "--lora_dropout", "0", "--padding_free", flat, "--split_dataset_ratio", "0",
            *SHORT_RUN,
        )  # fmt: skip
        assert r.returncode == 0, r.stderr[-2000:]
        losses[flat] = train_losses(only_run(out))
    assert losses["true"].keys() == losses["false"].keys() == {1, 2}
    for step in (1, 2):
        assert abs(losses["true"][step] - losses["false"][step]) < 1e-4


def _lora_pair(tiny_llama, dropout: float, dtype=torch.float32):
    """The same peft LoRA model twice: one with peft's forward, one with the fused one (non-zero B, so both paths
    matter)."""
    from peft import LoraConfig, get_peft_model

    from lmforge.tuners.fused_lora import use_fused_lora

    models = []
    for _ in range(2):
        torch.manual_seed(0)
        base = _load(tiny_llama, "segments").to(dtype)
        cfg = LoraConfig(r=4, lora_alpha=8, lora_dropout=dropout, target_modules="all-linear")
        model = get_peft_model(base, cfg)
        for name, p in model.named_parameters():
            if "lora_B" in name:
                torch.nn.init.normal_(p, std=0.05, generator=torch.Generator().manual_seed(hash(name) % 2**31))
        models.append(model.train())
    assert use_fused_lora(models[1]) == 7 * models[1].config.num_hidden_layers
    return models


def _grads(model, ids, autocast: bool = False):
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        loss = model(input_ids=ids, labels=ids).loss
    loss.backward()
    return loss.item(), {n: p.grad.float() for n, p in model.named_parameters() if p.requires_grad}


@pytest.mark.parametrize("autocast", [False, True])
def test_fused_lora_equals_peft(tiny_llama, autocast):
    dtype = torch.bfloat16 if autocast else torch.float32  # frozen weights in bf16 under autocast, as training does
    peft_model, fused = _lora_pair(tiny_llama, dropout=0.0, dtype=dtype)
    for m in (peft_model, fused):  # LoRA parameters stay fp32, as lmforge trains them
        for p in m.parameters():
            if p.requires_grad:
                p.data = p.data.float()
    ids = torch.randint(0, 1000, (1, 48), generator=torch.Generator().manual_seed(3))
    (l1, g1), (l2, g2) = _grads(peft_model, ids, autocast), _grads(fused, ids, autocast)
    tol = 2e-2 if autocast else 1e-5
    assert abs(l1 - l2) < tol * max(1.0, abs(l1))
    assert g1.keys() == g2.keys() and len(g1) > 0
    for name in g1:
        scale = g1[name].abs().max().item() + 1e-8
        assert (g1[name] - g2[name]).abs().max().item() / scale < (5e-2 if autocast else 1e-4), name


def test_fused_lora_dropout_mask_and_fallbacks(tiny_llama):
    from lmforge.tuners.dropout import keep_mask

    _, fused = _lora_pair(tiny_llama, dropout=0.25)
    layer = fused.base_model.model.model.layers[0].self_attn.q_proj
    x = torch.randn(2, 64, layer.in_features, requires_grad=True)
    torch.manual_seed(5)
    y = layer(x)
    torch.manual_seed(5)
    keep = keep_mask((128, layer.in_features), 0.25, torch.float32, x.device).view_as(x)
    assert abs(1 - keep.mean().item() - 0.25) < 0.02
    a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
    s = layer.scaling["default"] / 0.75
    expected = layer.base_layer(x) + s * ((x * keep) @ a.t()) @ b.t()
    assert (y - expected).abs().max().item() < 1e-5
    y.sum().backward()  # the input gradient goes through the same mask
    ones = torch.ones_like(y)
    gx = ones @ layer.base_layer.weight + s * ((ones @ b) @ a) * keep
    assert (x.grad - gx).abs().max().item() < 1e-4
    fused.eval()  # eval: no dropout, the plain LoRA output
    assert (layer(x) - (layer.base_layer(x) + layer.scaling["default"] * (x @ a.t()) @ b.t())).abs().max() < 1e-5
    with fused.disable_adapter():  # peft's own forward covers disabled adapters
        assert torch.equal(layer(x), layer.base_layer(x))


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_chunked_cross_entropy_equals_torch(dtype):
    from lmforge.train.loss import CHUNK, IGNORE, cross_entropy

    g = torch.Generator().manual_seed(0)
    n = 2 * CHUNK + 5  # several chunks and a ragged last one
    logits = (torch.randn(n, 300, generator=g) * 3).to(dtype).requires_grad_()
    targets = torch.randint(0, 300, (n,), generator=g)
    targets[[0, 40, n - 1]] = IGNORE
    ours, predicted = cross_entropy(logits, targets, 50.0)
    (ours * 3).backward()  # a grad_loss other than 1 takes the scaling path
    ours_grad = logits.grad.clone()
    logits.grad = None
    theirs = torch.nn.functional.cross_entropy(logits.float(), targets, ignore_index=IGNORE, reduction="sum") / 50
    (theirs * 3).backward()
    assert abs(ours.item() - theirs.item()) < 1e-5 * max(1.0, theirs.item())
    tol = 1e-6 if dtype == torch.float32 else 1e-3
    assert (ours_grad.float() - logits.grad.float()).abs().max().item() < tol
    assert torch.equal(predicted, logits.float().argmax(-1))


def test_trained_positions_gradients_equal_transformers(tiny_llama, tmp_path):
    from transformers import TrainingArguments

    from lmforge.train.trainer import LmforgeTrainer

    model = _load(tiny_llama, "segments")
    trainer = LmforgeTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True))
    ids = torch.randint(0, 1000, (2, 40), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :25] = labels[1, :10] = -100
    grads = []
    for ours in (True, False):
        model.zero_grad()
        batch = {"input_ids": ids, "labels": labels}
        loss = trainer.compute_loss(model, batch) if ours else model(**batch).loss
        loss.backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert (grads[0] - grads[1]).abs().max().item() < 1e-5 * grads[1].abs().max().item() + 1e-7


@pytest.mark.parametrize("autocast", [False, True])
def test_linear_cross_entropy_equals_torch(autocast):
    from lmforge.train.loss import CHUNK, IGNORE, linear_cross_entropy

    g = torch.Generator().manual_seed(0)
    n = 2 * CHUNK + 5
    hidden = torch.randn(n, 48, generator=g).requires_grad_()
    weight = torch.randn(300, 48, generator=g) * 0.3  # frozen
    targets = torch.randint(0, 300, (n,), generator=g)
    targets[[0, 40, n - 1]] = IGNORE
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        ours, predicted = linear_cross_entropy(hidden, weight, targets, 50.0)
        (ours * 3).backward()
        ours_grad = hidden.grad.clone()
        hidden.grad = None
        logits = torch.nn.functional.linear(hidden, weight).float()
    theirs = torch.nn.functional.cross_entropy(logits, targets, ignore_index=IGNORE, reduction="sum") / 50
    (theirs * 3).backward()
    assert ours_grad.dtype == hidden.dtype
    assert abs(ours.item() - theirs.item()) < 1e-5 * max(1.0, theirs.item())  # the same logits either way
    tol = 1e-5 if not autocast else 1e-2  # bf16 rounding of the gradient: ~0.6% here
    assert (ours_grad - hidden.grad).abs().max().item() < tol * hidden.grad.abs().max().item()
    if not autocast:
        assert torch.equal(predicted, logits.argmax(-1))


@pytest.mark.parametrize("fixture", ["tiny_llama", "tiny_qwen3"])
def test_frozen_head_path_equals_transformers(fixture, request, tmp_path):
    """LoRA: the decoder and the fused output layer + loss give transformers' loss and LoRA gradients."""
    from peft import LoraConfig, get_peft_model
    from transformers import TrainingArguments

    from lmforge.train.trainer import LmforgeTrainer

    path = request.getfixturevalue(fixture)
    model = get_peft_model(_load(path, "segments"), LoraConfig(r=4, target_modules="all-linear"))
    trainer = LmforgeTrainer(model=model, args=TrainingArguments(output_dir=str(tmp_path), use_cpu=True))
    assert trainer._head(model) is not None  # the path under test is taken
    ids = torch.randint(0, 1000, (2, 40), generator=torch.Generator().manual_seed(1))
    labels = ids.clone()
    labels[0, :25] = labels[1, :10] = -100
    torch.manual_seed(0)
    for p in model.parameters():  # B starts at zero: give the LoRA path some effect on the loss
        if p.requires_grad:
            p.data.normal_(0, 0.05)
    losses, grads = [], []
    for ours in (True, False):
        model.zero_grad()
        batch = {"input_ids": ids, "labels": labels}
        loss = trainer.compute_loss(model, batch) if ours else model(**batch).loss
        loss.backward()
        losses.append(loss.item())
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None]))
    assert abs(losses[0] - losses[1]) < 1e-5
    assert (grads[0] - grads[1]).abs().max().item() < 1e-5 * grads[1].abs().max().item() + 1e-7
    full = LmforgeTrainer(model=_load(path, "segments"), args=TrainingArguments(str(tmp_path), use_cpu=True))
    assert full._head(full.model) is None  # a trained output layer keeps the model's own forward


def test_floating_point_ops_equal_the_trainers(tiny_llama, tmp_path):
    from transformers import Trainer, TrainingArguments

    from lmforge.train.trainer import LmforgeTrainer

    trainer = LmforgeTrainer(model=_load(tiny_llama, "segments"), args=TrainingArguments(str(tmp_path), use_cpu=True))
    for n in (7, 40):
        inputs = {"input_ids": torch.zeros(2, n, dtype=torch.long)}
        assert trainer.floating_point_ops(inputs) == Trainer.floating_point_ops(trainer, inputs) > 0
