"""Tuners beyond plain LoRA: each trains 2 steps on a tiny model; mergeable ones merge exactly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lmforge.cli import main
from tests.train.helpers import SHORT_RUN, logs, only_run, write_sft_data

STEPS = [*SHORT_RUN, "--learning_rate", "1e-2", "--torch_dtype", "float32"]


def _sft(tmp_path: Path, model: Path, *extra: str) -> Path:
    data = write_sft_data(tmp_path / "d.jsonl", n=8)
    out = tmp_path / "out"
    assert main(["sft", "--model", str(model), "--dataset", str(data), *STEPS, "--output_dir", str(out), *extra]) == 0
    return only_run(out) / "checkpoint-2"


def _logits(model, ids):
    with torch.no_grad():
        return model(ids).logits


@pytest.mark.parametrize(
    "extra",
    [
        ["--tuner_type", "lora", "--use_dora", "true"],
        ["--tuner_type", "lora", "--use_rslora", "true", "--init_weights", "pissa"],
        ["--tuner_type", "lora", "--init_weights", "olora"],
        ["--tuner_type", "adalora"],
        ["--tuner_type", "vera", "--vera_rank", "16"],
        ["--tuner_type", "boft", "--boft_block_size", "4", "--target_modules", "q_proj", "v_proj"],
        ["--tuner_type", "fourierft", "--fourier_n_frequency", "64"],
        ["--tuner_type", "bone", "--lora_rank", "4"],
    ],
    ids=["dora", "rslora-pissa", "olora", "adalora", "vera", "boft", "fourierft", "bone"],
)
def test_peft_tuner_trains_and_merges(tmp_path, tiny_llama, extra):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    ckpt = _sft(tmp_path, tiny_llama, *extra)
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    base = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    before = _logits(base, ids)
    peft_model = PeftModel.from_pretrained(base, ckpt).eval()
    unmerged = _logits(peft_model, ids)
    assert (unmerged - before).abs().max() > 1e-6  # the tuner changed the model
    merged_dir = tmp_path / "merged"
    assert main(["export", "--adapters", str(ckpt), "--merge_lora", "true", "--output_dir", str(merged_dir)]) == 0
    merged = AutoModelForCausalLM.from_pretrained(merged_dir, dtype=torch.float32)
    assert (_logits(merged, ids) - unmerged).abs().max() <= 1e-5


def test_qlora_nf4_on_cpu(tmp_path, tiny_llama):
    ckpt = _sft(tmp_path, tiny_llama, "--quant_method", "bnb", "--quant_bits", "4", "--bnb_4bit_quant_type", "nf4")
    assert (ckpt / "adapter_model.safetensors").is_file()
    args = json.loads((ckpt / "args.json").read_text())
    assert args["quant_method"] == "bnb" and args["quant_bits"] == 4
    assert all(x["loss"] > 0 for x in logs(ckpt.parent) if "loss" in x)


@pytest.mark.parametrize("bits", ["8", "4"])
def test_qlora_quanto_on_cpu(tmp_path, tiny_llama, bits):
    ckpt = _sft(tmp_path, tiny_llama, "--quant_method", "quanto", "--quant_bits", bits)
    assert (ckpt / "adapter_model.safetensors").is_file()
    losses = [x["loss"] for x in logs(ckpt.parent) if "loss" in x]
    assert len(losses) == 2 and all(v > 0 for v in losses)


def test_loraplus_puts_the_ratio_on_b(tiny_llama):
    from peft import get_peft_model
    from transformers import AutoModelForCausalLM

    from lmforge.args import TunerArgs
    from lmforge.tuners.peft_tuners import lora_config, loraplus_optimizer

    model = get_peft_model(AutoModelForCausalLM.from_pretrained(tiny_llama), lora_config(TunerArgs()))
    opt = loraplus_optimizer(model, lr=1e-4, ratio=16, weight_decay=0.0)
    names = {id(p): n for n, p in model.named_parameters()}
    for group in opt.param_groups:
        for p in group["params"]:
            if "lora_B" in names[id(p)]:
                assert group["lr"] == pytest.approx(16e-4)
            elif "lora_A" in names[id(p)]:
                assert group["lr"] == pytest.approx(1e-4)


def test_loraplus_training_runs(tmp_path, tiny_llama):
    assert (_sft(tmp_path, tiny_llama, "--lorap_lr_ratio", "16") / "adapter_model.safetensors").is_file()


def test_lisa_changes_only_active_layers(tmp_path, tiny_llama):
    from safetensors.torch import load_file

    ckpt = _sft(
        tmp_path, tiny_llama, "--tuner_type", "full", "--lisa_activated_layers", "1", "--lisa_step_interval", "10"
    )
    before, after = load_file(tiny_llama / "model.safetensors"), load_file(ckpt / "model.safetensors")
    changed = {k.split(".")[2] for k in before if "layers." in k and not torch.equal(before[k], after[k])}
    assert len(changed) == 1  # one of the two layers trained


def test_freeze_ratio_and_trainable_parameters(tmp_path, tiny_llama):
    from safetensors.torch import load_file

    ckpt = _sft(
        tmp_path,
        tiny_llama,
        "--tuner_type",
        "full",
        "--freeze_parameters_ratio",
        "0.99",
        "--trainable_parameters",
        "model.layers.0.self_attn",
    )
    before, after = load_file(tiny_llama / "model.safetensors"), load_file(ckpt / "model.safetensors")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith("model.layers.0.self_attn") or "layers.1" in k or "norm" in k for k in changed)
    assert "model.embed_tokens.weight" not in changed


def test_llamapro_expands_and_trains_only_new_blocks(tmp_path, tiny_llama):
    from safetensors.torch import load_file

    ckpt = _sft(tmp_path, tiny_llama, "--tuner_type", "llamapro", "--llamapro_num_new_blocks", "2")
    cfg = json.loads((ckpt / "config.json").read_text())
    assert cfg["num_hidden_layers"] == 4
    before, after = load_file(tiny_llama / "model.safetensors"), load_file(ckpt / "model.safetensors")
    # old layer 1 is new layer 2; new blocks are layers 1 and 3
    assert torch.equal(
        before["model.layers.1.self_attn.q_proj.weight"], after["model.layers.2.self_attn.q_proj.weight"]
    )
    assert not torch.equal(
        after["model.layers.1.self_attn.o_proj.weight"],
        torch.zeros_like(after["model.layers.1.self_attn.o_proj.weight"]),
    )


def test_llamapro_default_spreads_blocks_over_30_layers_and_starts_as_identity():
    """The default 4 new blocks on a 30-layer model (the embedded SmolLM2's depth): spread after layers 6, 14, 21,
    29; at init the expanded model computes exactly what the base did, and only the new blocks get gradients."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from lmforge.args.groups import TunerArgs
    from lmforge.tuners.llamapro import expand_blocks, new_block_positions

    num_new = TunerArgs().llamapro_num_new_blocks
    assert new_block_positions(30, num_new) == [6, 14, 21, 29]
    assert new_block_positions(4, 2) == [1, 3]  # a divisor: the paper's layout, as before
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64, hidden_size=16, intermediate_size=32, num_hidden_layers=30, num_attention_heads=2,
        num_key_value_heads=1, max_position_embeddings=64,
    )  # fmt: skip
    model = LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 64, (2, 9))
    before = _logits(model, ids)
    old = list(model.model.layers)
    model = expand_blocks(model, num_new)
    assert model.config.num_hidden_layers == 34 and len(model.model.layers) == 34
    new_idx = [i for i, layer in enumerate(model.model.layers) if all(layer is not o for o in old)]
    assert new_idx == [7, 16, 24, 33]  # each right after its source layer (shifted by the blocks before it)
    assert torch.equal(_logits(model, ids), before)
    model(ids).logits.sum().backward()
    trained = {n.split(".")[2] for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0}
    assert {int(i) for i in trained} <= set(new_idx) and trained
    for name, p in model.named_parameters():  # embeddings, norms and the old layers stay frozen
        assert p.requires_grad == (".layers." in name and int(name.split(".")[2]) in new_idx), name


def test_galore_full_training(tmp_path, tiny_llama):
    ckpt = _sft(tmp_path, tiny_llama, "--tuner_type", "full", "--use_galore", "true", "--galore_rank", "8")
    assert (ckpt / "model.safetensors").is_file()


@pytest.mark.parametrize(
    "flag,needle",
    [
        (["--use_liger_kernel", "true"], "--use_liger_kernel needs a CUDA GPU"),
        (["--tuner_backend", "unsloth"], "--tuner_backend unsloth needs a CUDA GPU"),
        (["--tuner_type", "reft", "--reft_layers", "7"], "--reft_layers [7]: the model has 2 layers"),
        (["--quant_bits", "4"], "--quant_bits without --quant_method"),
        (["--quant_method", "hqq", "--quant_bits", "4"], "transformers cannot load HQQ models"),
        (["--lora_dropout", "1"], "--lora_dropout 1.0: must be in [0, 1)"),
        (["--lora_dropout", "-0.1"], "--lora_dropout -0.1: must be in [0, 1)"),
    ],
)
def test_gpu_only_and_unavailable_paths_fail_clearly(tmp_path, tiny_llama, capsys, flag, needle):
    if torch.cuda.is_available() and "CUDA" in needle:
        pytest.skip("a GPU is present")
    data = write_sft_data(tmp_path / "d.jsonl", n=4)
    code = main(
        [
            "sft",
            "--model",
            str(tiny_llama),
            "--dataset",
            str(data),
            "--max_steps",
            "1",
            "--output_dir",
            str(tmp_path / "o"),
            *flag,
        ]
    )
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert code != 0 and len(err) == 1 and needle in err[0]


def test_bottleneck_adapter_trains_saves_resumes_and_serves(tmp_path, tiny_llama, capsys):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from lmforge.infer.loading import load_for_inference

    ckpt = _sft(tmp_path, tiny_llama, "--tuner_type", "adapter", "--adapter_length", "16")
    weights = load_file(str(ckpt / "adapter_model.safetensors"))
    assert weights and all(".mlp.lmforge_adapter." in k for k in weights)  # only the adapters are saved
    assert len(weights) == 2 * 4  # 2 blocks x (down, up) x (weight, bias)
    assert any(v.abs().max() > 0 for k, v in weights.items() if ".up." in k)  # zero-initialised `up` trained
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    before = _logits(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32), ids)
    after = _logits(load_for_inference(tiny_llama, (str(ckpt),), dtype="float32"), ids)
    assert (after - before).abs().max() > 1e-6
    # resume from the adapter checkpoint: steps continue, the adapter weights are the starting point
    data, out = tmp_path / "d.jsonl", tmp_path / "resumed"
    argv = ["sft", "--model", str(tiny_llama), "--dataset", str(data), *STEPS, "--tuner_type", "adapter"]
    argv += ["--adapter_length", "16", "--max_steps", "3", "--output_dir", str(out)]
    assert main([*argv, "--resume_from_checkpoint", str(ckpt)]) == 0
    assert [x["global_step"] for x in logs(only_run(out)) if "loss" in x] == [3]
    capsys.readouterr()
    code = main(["export", "--adapters", str(ckpt), "--merge_lora", "true", "--output_dir", str(tmp_path / "m")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert code != 0 and len(err) == 1 and "nothing to merge" in err[0]


@pytest.mark.parametrize("kind", ["LoreftIntervention", "NoreftIntervention"])
def test_reft_trains_loads_and_refuses_merge(tmp_path, tiny_llama, capsys, kind):
    from safetensors.torch import load_file
    from transformers import AutoModelForCausalLM

    from lmforge.infer.loading import load_for_inference

    flags = ["--tuner_type", "reft", "--reft_layers", "1", "--reft_rank", "4", "--reft_intervention_type", kind]
    ckpt = _sft(tmp_path, tiny_llama, *flags)
    weights = load_file(str(ckpt / "adapter_model.safetensors"))
    assert weights and all(k.startswith("model.layers.1.lmforge_reft.") for k in weights)
    ids = torch.tensor([[1, 20, 30, 40, 50, 60]])
    before = _logits(AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32), ids)
    model = load_for_inference(tiny_llama, (str(ckpt),), dtype="float32")
    assert (_logits(model, ids) - before).abs().max() > 1e-6
    if kind == "LoreftIntervention":  # R keeps orthonormal rows after training
        r = model.model.layers[1].lmforge_reft.weight
        assert torch.allclose(r @ r.T, torch.eye(4), atol=1e-5)
    capsys.readouterr()
    code = main(["export", "--adapters", str(ckpt), "--merge_lora", "true", "--output_dir", str(tmp_path / "m")])
    err = [ln for ln in capsys.readouterr().err.splitlines() if "error:" in ln]
    assert code != 0 and len(err) == 1 and "nothing to merge" in err[0]
