"""LLaMA-Factory training YAMLs run as they are (keys from its examples/train_lora and train_qlora), and
`lmforge migrate` prints a command that, run as printed, trains with the same args.json."""

from __future__ import annotations

import json
import shlex
from pathlib import Path

import pytest
import yaml

from lmforge.args.parser import dict_tokens, parse_flags
from lmforge.cli import COMMANDS, main
from tests.train.helpers import only_run

# the keys of LLaMA-Factory's examples/train_lora/qwen3_lora_sft.yaml, model and sizes pointed at a tiny model
LORA_SFT = {
    "model_name_or_path": None,
    "trust_remote_code": True,
    "stage": "sft",
    "do_train": True,
    "finetuning_type": "lora",
    "lora_rank": 8,
    "lora_target": "all",
    "dataset": "identity,alpaca_en_demo",
    "template": "chatml",
    "cutoff_len": 256,
    "max_samples": 1000,
    "preprocessing_num_workers": 1,
    "dataloader_num_workers": 0,
    "output_dir": "saves/tiny/lora/sft",
    "logging_steps": 1,
    "save_steps": 500,
    "plot_loss": True,
    "overwrite_output_dir": True,
    "save_only_model": False,
    "report_to": "none",
    "per_device_train_batch_size": 2,
    "gradient_accumulation_steps": 1,
    "learning_rate": 1.0e-4,
    "num_train_epochs": 3.0,
    "max_steps": 2,
    "lr_scheduler_type": "cosine",
    "warmup_ratio": 0.1,
    "bf16": False,
    "ddp_timeout": 180000000,
    "resume_from_checkpoint": None,
}


@pytest.fixture
def lf_dir(tmp_path, monkeypatch, tiny_llama) -> Path:
    """A working folder as LLaMA-Factory has it: data/dataset_info.json naming local files."""
    data = tmp_path / "data"
    data.mkdir()
    alpaca = [{"instruction": f"Add {i} and {i}.", "input": "", "output": f"{2 * i}"} for i in range(6)]
    ident = [{"instruction": "Who are you?", "input": "", "output": "I am a tiny model."}] * 3
    pref = [{"instruction": f"Say {i}.", "input": "", "chosen": f"{i}", "rejected": "no"} for i in range(6)]
    (data / "alpaca.json").write_text(json.dumps(alpaca))
    (data / "identity.json").write_text(json.dumps(ident))
    (data / "pref.json").write_text(json.dumps(pref))
    kto = [
        {
            "messages": [{"role": "user", "content": f"Say {i}."}, {"role": "assistant", "content": f"{i}"}],
            "label": i % 2 == 0,
        }
        for i in range(6)
    ]
    (data / "kto.json").write_text(json.dumps(kto))
    (data / "c4.jsonl").write_text("".join(json.dumps({"text": f"Line {i} of some text."}) + "\n" for i in range(6)))
    info = {
        "identity": {"file_name": "identity.json"},
        "alpaca_en_demo": {"file_name": "alpaca.json"},
        "dpo_en_demo": {
            "file_name": "pref.json",
            "ranking": True,
            "columns": {"prompt": "instruction", "query": "input", "chosen": "chosen", "rejected": "rejected"},
        },
        "c4_demo": {"file_name": "c4.jsonl", "columns": {"prompt": "text"}},
        "kto_en_demo": {  # LLaMA-Factory's own entry for its KTO demo
            "file_name": "kto.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages", "kto_tag": "label"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
    }
    (data / "dataset_info.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    LORA_SFT["model_name_or_path"] = str(tiny_llama)
    return tmp_path


def _write(path: Path, cfg: dict) -> str:
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return str(path)


def _args(run: Path) -> dict:
    return json.loads((run / "args.json").read_text())


RUN_SPECIFIC = {"run_dir", "output_dir", "time", "start_time", "versions", "command"}


def _stable(args: dict) -> dict:
    return {k: v for k, v in args.items() if k not in RUN_SPECIFIC}


def test_lora_sft_yaml_runs_and_migrate_prints_the_same_run(lf_dir, capsys):
    cfg = _write(lf_dir / "qwen3_lora_sft.yaml", LORA_SFT)
    assert main(["sft", cfg]) == 0
    err = capsys.readouterr().err
    assert "LLaMA-Factory config; no effect here: do_train, plot_loss, overwrite_output_dir" in err
    run = only_run(lf_dir / "saves/tiny/lora/sft")
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()
    a = _args(run)
    assert a["tuner_type"] == "lora" and a["lora_rank"] == 8 and a["lora_alpha"] == 16  # LF: alpha = 2 * rank
    assert a["lora_dropout"] == 0.0 and a["target_modules"] == ["all-linear"] and a["weight_decay"] == 0.0
    assert a["dataset"] == ["identity", "alpaca_en_demo"]  # max_samples 1000 above both sizes: whole files
    assert a["max_length"] == 256 and a["truncation_strategy"] == "right" and a["template"] == "chatml"
    assert a["report_to"] == ["none"] and a["torch_dtype"] is None and a["adam_beta2"] == 0.999

    assert main(["migrate", cfg]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("lmforge "))
    argv = shlex.split(line)[1:]
    assert argv[0] == "sft" and main(argv) == 0  # run as printed
    runs = sorted(p for p in (lf_dir / "saves/tiny/lora/sft").iterdir() if p.name.startswith("v"))
    b = _args(runs[1])
    assert {k: v for k, v in a.items() if k not in RUN_SPECIFIC} == {
        k: v for k, v in b.items() if k not in RUN_SPECIFIC
    }
    as_yaml = yaml.safe_load(out.split("this.yaml\n", 1)[1])  # the YAML block reads back as the same flags
    groups = COMMANDS["sft"].groups
    assert parse_flags(dict_tokens(as_yaml), groups).to_dict() == parse_flags(argv[1:], groups).to_dict()


@pytest.mark.parametrize(
    ("stage", "extra", "checks"),
    [
        (
            "dpo",
            {"dataset": "dpo_en_demo", "pref_beta": 0.2, "pref_loss": "sigmoid", "learning_rate": 5.0e-6},
            {"rlhf_type": "dpo", "beta": 0.2},
        ),
        ("kto", {"dataset": "kto_en_demo", "pref_beta": 0.1}, {"rlhf_type": "kto", "beta": 0.1}),
        ("pt", {"dataset": "c4_demo", "template": None}, {"loss_scale": "all"}),
        ("sft", {"quantization_bit": 4, "quantization_method": "bnb"}, {"quant_method": "bnb", "quant_bits": 4}),
    ],
    ids=["dpo", "kto", "pretrain", "qlora"],
)
def test_stage_picks_the_command_and_trains(lf_dir, stage, extra, checks, capsys):
    cfg = _write(lf_dir / f"{stage}.yaml", {**LORA_SFT, "stage": stage, "output_dir": "out", **extra})
    assert main(["sft", cfg]) == 0  # as a LLaMA-Factory user types it, whatever the stage
    run = only_run(lf_dir / "out")
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()
    a = _args(run)
    assert {k: a[k] for k in checks} == checks
    if stage != "sft":
        assert f"stage {stage} runs as `lmforge {'pt' if stage == 'pt' else 'rlhf'}`" in capsys.readouterr().err


def test_unsupported_keys_are_listed_in_one_line(lf_dir, capsys):
    bad = {**LORA_SFT, "finetuning_type": "oft", "rope_scaling": "linear", "lora_rnak": 4}
    cfg = _write(lf_dir / "bad.yaml", bad)
    assert main(["sft", cfg]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"lmforge sft: error: {cfg}: LLaMA-Factory keys lmforge cannot run:")
    assert "finetuning_type: oft" in err[0] and "rope_scaling" in err[0] and "lora_rnak" in err[0]
    assert not (lf_dir / "saves").exists()


def test_reward_then_ppo_stages_run_as_in_llamafactory(lf_dir, capsys):
    """LLaMA-Factory's rm then ppo examples: the reward LoRA trained by stage rm scores stage ppo's rollouts."""
    rm = {**LORA_SFT, "stage": "rm", "dataset": "dpo_en_demo", "output_dir": "saves/tiny/lora/reward"}
    assert main(["sft", _write(lf_dir / "rm.yaml", rm)]) == 0
    reward = only_run(lf_dir / "saves/tiny/lora/reward") / "checkpoint-2"
    assert _args(reward.parent)["rlhf_type"] == "rm"
    # examples/train_lora/llama3_lora_ppo.yaml: reward_model names the rm stage's LoRA output, generation keys beside
    ppo = {**LORA_SFT, "stage": "ppo", "reward_model": str(reward), "output_dir": "saves/tiny/lora/ppo"}
    ppo |= {"max_new_tokens": 4, "top_k": 0, "top_p": 0.9, "per_device_train_batch_size": 2}
    assert main(["sft", _write(lf_dir / "ppo.yaml", ppo)]) == 0, capsys.readouterr().err[-2000:]
    run = only_run(lf_dir / "saves/tiny/lora/ppo")
    a = _args(run)
    assert a["rlhf_type"] == "ppo" and a["reward_model"] == str(reward) and a["max_completion_length"] == 4
    assert (run / "checkpoint-2" / "adapter_model.safetensors").is_file()
    assert "stage ppo runs as `lmforge rlhf`" in capsys.readouterr().err


def test_freeze_trains_only_the_last_layers(lf_dir, tiny_llama):
    """finetuning_type freeze (examples/train_full/..._freeze): the last freeze_trainable_layers layers learn."""
    from safetensors.torch import load_file

    cfg = {**LORA_SFT, "finetuning_type": "freeze", "freeze_trainable_layers": 1, "output_dir": "freeze"}
    cfg |= {"freeze_trainable_modules": "mlp", "learning_rate": 1e-2}
    assert main(["sft", _write(lf_dir / "freeze.yaml", cfg)]) == 0
    run = only_run(lf_dir / "freeze")
    a = _args(run)
    last = json.loads((tiny_llama / "config.json").read_text())["num_hidden_layers"] - 1
    assert a["tuner_type"] == "full" and a["trainable_parameters"] == [f"model.layers.{last}.mlp."]
    before = load_file(next(tiny_llama.glob("*.safetensors")))
    after = load_file(run / "checkpoint-2" / "model.safetensors")
    changed = {k for k in before if not before[k].equal(after[k])}
    assert changed and all(k.startswith(f"model.layers.{last}.mlp.") for k in changed), changed
