"""The relation rules (args/rules.py): each one, by name, refuses its case in one line before anything loads;
every rule in the table has a case here."""

from __future__ import annotations

import pytest

from lmforge import cli
from lmforge.args.rules import RULES
from tests.conftest import FIXTURES

SC = ["--dataset", "self-cognition#2"]
CASES = {
    "dataset_given": (["sft"], "no --dataset given"),
    "infer_data": (["infer", "--dataset", "self-cognition"], "--dataset is not used by infer"),
    "streaming_needs_max_steps": (["sft", *SC, "--streaming"], "--streaming true needs --max_steps"),
    "packing_not_streaming": (["pt", *SC, "--streaming", "--max_steps", "5", "--packing"], "--packing with"),
    "split_not_streaming": (["sft", *SC, "--streaming", "--max_steps", "5", "--split_dataset_ratio", "0.1"], "map"),
    "quant_bits_fit_method": (["sft", *SC, "--quant_bits", "4"], "--quant_bits without --quant_method"),
    "loraplus_is_lora": (["sft", *SC, "--tuner_type", "full", "--lorap_lr_ratio", "16"], "is a LoRA option"),
    "lisa_is_full": (["sft", *SC, "--lisa_activated_layers", "2"], "use it with --tuner_type full"),
    "one_optimizer": (
        ["sft", *SC, "--external_plugins", str(FIXTURES / "plugin_all.py"), "--optimizer", "plug_sgd", "--use_galore"],
        "both choose the optimizer",
    ),
    "part_lrs": (["sft", *SC, "--vit_lr", "1e-5"], "--vit_lr is set but the vision tower is frozen"),
    "adapters_need_peft": (["sft", *SC, "--tuner_type", "full", "--adapters", "."], "--adapters with --tuner_type"),
    "adalora_ranks": (["sft", *SC, "--tuner_type", "adalora", "--adalora_target_r", "16"], "exceeds"),
    "deepspeed_or_fsdp": (["sft", *SC, "--deepspeed", "zero2", "--fsdp", "fsdp2"], "mutually exclusive"),
    "reward_weights_match": (
        ["rlhf", *SC, "--rlhf_type", "grpo", "--reward_funcs", "format", "--reward_weights", "1", "2"],
        "--reward_weights has 2 values for 1 --reward_funcs",
    ),
    "rlhf_needs": (["rlhf", *SC, "--rlhf_type", "gkd"], "needs --teacher_model"),
    "rlhf_tuner": (["rlhf", *SC, "--tuner_type", "llamapro"], "not supported by rlhf"),
    "soft_overlong_lengths": (
        ["rlhf", *SC, "--rlhf_type", "grpo", "--reward_funcs", "soft_overlong", "--soft_cache_length", "600"],
        "must be below the soft maximum length 512",
    ),
    "task_type_sft_only": (["rlhf", *SC, "--task_type", "seq_cls"], "--task_type seq_cls is trained with lmforge sft"),
    "task_flags_match": (["sft", *SC, "--num_labels", "2"], "--num_labels is a --task_type seq_cls flag"),
    "export_job": (["export", "--adapters", ".", "--merge_lora", "--push_to_hub"], "needs --hub_model_id"),
    "eval_job": (["eval"], "no --eval_dataset given"),
    "cpu_linear_fits": (["infer", "--cpu_linear", "int8", "--adapters", "."], "--cpu_linear int8 with --adapters"),
}
MORE = [
    (["sft", *SC, "--quant_method", "bnb", "--quant_bits", "2"], "--quant_method bnb needs --quant_bits 4 or 8"),
    (["sft", *SC, "--quant_method", "hqq"], "cannot load HQQ"),
    (["sft", *SC, "--quant_method", "eetq", "--quant_bits", "8"], "EETQ's int8 kernels are CUDA-only"),
    (["rlhf", *SC, "--rlhf_type", "grpo"], "GRPO needs --reward_funcs"),
    (["rlhf", *SC, "--rlhf_type", "ppo"], "needs --reward_model"),
    (["rlhf", *SC, "--rlhf_type", "ppo", "--reward_funcs", "format", "--tuner_type", "full"], "LoRA policies"),
    (["export", "--merge_lora"], "export needs --adapters"),
    (["export", "--adapters", "."], "nothing to export"),
    (["export", "--adapters", ".", "--merge_lora", "--output_dir", "."], "already exists"),
    (["eval", "--eval_dataset", "lmforge_mcq", "--adapters", ".", "--eval_url", "http://x"], "--adapters need a local"),
    (["eval", "--eval_dataset", "lmforge_mcq", "--eval_backend", "VLMEvalKit"], "not available in this lmforge"),
    (["deploy", "--cpu_linear", "int8", "--infer_backend", "llamacpp"], "--cpu_linear int8 is a PyTorch engine flag"),
    (["app", "--cpu_linear", "bf16_packed", "--torch_dtype", "float32"], "use --torch_dtype bfloat16"),
    (["infer", "--cpu_linear", "int4", "--torch_dtype", "float16"], "--cpu_linear int4 with --torch_dtype float16"),
]


def test_every_rule_has_a_case():
    assert {r.name for r in RULES} == set(CASES)


@pytest.mark.parametrize("argv,needle", [*CASES.values(), *MORE], ids=[*CASES, *(m[0][0] for m in MORE)])
def test_rule_refuses_in_one_line(argv, needle, no_command_runs, capsys):
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"lmforge {argv[0]}: error: ") and needle in err, err


def test_rules_pass_a_sound_command(no_command_runs):
    argv = ["sft", *SC, "--streaming", "--max_steps", "5", "--tuner_type", "full", "--lisa_activated_layers", "2"]
    with pytest.raises(AssertionError, match="validation let the command through"):
        cli.main(argv)
