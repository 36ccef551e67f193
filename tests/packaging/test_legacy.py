"""ms-swift v2 / v3 flag names work, each with a one-line deprecation note; a v2 script trains."""

from __future__ import annotations

import json

import pytest

from lmforge.args.parser import parse_flags
from lmforge.cli import COMMANDS, main
from lmforge.errors import UserError
from tests.train.helpers import only_run, write_sft_data

SFT = COMMANDS["sft"].groups


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (["--sft_type", "full"], {"tuner_type": "full"}),
        (["--train_type", "full"], {"tuner_type": "full"}),
        (["--model_id_or_path", "m"], {"model": "m"}),
        (["--custom_train_dataset_path", "a.jsonl", "b.jsonl"], {"dataset": ["a.jsonl", "b.jsonl"]}),
        (["--custom_val_dataset_path", "v.jsonl"], {"val_dataset": ["v.jsonl"]}),
        (["--dataset_test_ratio", "0.1"], {"split_dataset_ratio": 0.1}),
        (["--lora_target_modules", "ALL"], {"target_modules": ["all-linear"]}),
        (["--lora_target_modules", "q_proj", "v_proj"], {"target_modules": ["q_proj", "v_proj"]}),
        (["--lora_dropout_p", "0.1"], {"lora_dropout": 0.1}),
        (["--batch_size", "4", "--eval_batch_size", "2"], {"per_device_train_batch_size": 4}),
        (["--dtype", "bf16"], {"torch_dtype": "bfloat16"}),
        (["--quantization_bit", "4"], {"quant_method": "bnb", "quant_bits": 4}),
        (["--bnb_4bit_comp_dtype", "fp32"], {"bnb_4bit_compute_dtype": "float32"}),
        (["--use_flash_attn", "true"], {"attn_impl": "flash_attention_2"}),
        (["--model_type", "qwen2-7b-instruct", "--model", "m"], {"model_type": "qwen2"}),
        (["--model_type", "llama3-8b-instruct", "--model_id_or_path", "m"], {"model_type": "llama"}),
        (["--custom_register_path", __file__], {"external_plugins": [__file__]}),
        (["--evaluation_strategy", "steps", "--eval_steps", "3"], {"eval_steps": 3}),
    ],
)
def test_old_name_parses_as_the_new_one_with_a_note(old, new, capsys):
    got = parse_flags(old, SFT).to_dict()
    assert {k: got[k] for k in new} == new
    notes = capsys.readouterr().err.strip().splitlines()
    assert notes and all("ms-swift v" in n and "(deprecated)" in n for n in notes), notes


def test_current_names_get_no_note(capsys):
    assert parse_flags(["--model_type", "qwen2", "--eval_steps", "2"], SFT).to_dict()["model_type"] == "qwen2"
    assert capsys.readouterr().err == ""


def test_v2_model_type_alone_asks_for_the_model():
    with pytest.raises(UserError, match="ms-swift v2 named the model by its type"):
        parse_flags(["--model_type", "qwen2-7b-instruct"], SFT)
    with pytest.raises(UserError, match="--dataset NAME#N"):
        parse_flags(["--train_dataset_sample", "100"], SFT)


def test_a_v2_script_trains(tmp_path, tiny_llama, capsys):
    data = write_sft_data(tmp_path / "d.jsonl", n=8)
    out = tmp_path / "out"
    v2 = ["sft", "--sft_type", "lora", "--model_type", "llama3-8b-instruct", "--model_id_or_path", str(tiny_llama)]
    v2 += ["--custom_train_dataset_path", str(data), "--dataset_test_ratio", "0.25", "--eval_steps", "1"]
    v2 += ["--batch_size", "2", "--max_steps", "1", "--dtype", "fp32", "--output_dir", str(out)]
    assert main(v2) == 0
    err = capsys.readouterr().err
    assert "--sft_type is ms-swift v2's name; use --tuner_type (deprecated)" in err
    run = only_run(out)
    args = json.loads((run / "args.json").read_text())
    assert args["tuner_type"] == "lora" and args["model_type"] == "llama" and args["split_dataset_ratio"] == 0.25
    assert args["torch_dtype"] == "float32" and args["dataset"] == [str(data)]
    assert any("eval_loss" in json.loads(x) for x in (run / "logging.jsonl").read_text().splitlines())
