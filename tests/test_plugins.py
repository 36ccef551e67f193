"""Plug-ins load right after parsing, in every command: one file registers one of each kind
(tests/fixtures/plugin_all.py) and each entry is seen used, through the CLI."""

from __future__ import annotations

import json

from tests.conftest import FIXTURES, run_cli
from tests.train.helpers import only_run

PLUGIN = str(FIXTURES / "plugin_all.py")


def test_every_registration_kind_is_used(tmp_path, tiny_llama):
    rows = [{"ask": f"say {i}", "reply": f"word {i}"} for i in range(6)]
    (tmp_path / "raw.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    log = tmp_path / "used.log"
    env = {"PLUGIN_LOG": str(log), "PLUGIN_DATA": str(tmp_path)}
    out = tmp_path / "sft"
    sft = ["sft", "--external_plugins", PLUGIN, "--model", str(tiny_llama), "--model_type", "plug_family"]
    sft += ["--dataset", "plug_data", "--loss_type", "plug_loss", "--loss_scale", "plug_scale"]
    sft += ["--callbacks", "plug_cb", "--optimizer", "plug_sgd", "--trainer", "plug_trainer"]
    sft += ["--tuner_type", "plug_tuner", "--max_steps", "2", "--per_device_train_batch_size", "2"]
    r = run_cli(*sft, "--save_steps", "2", "--output_dir", str(out), env=env)
    assert r.returncode == 0, r.stderr[-3000:]
    run = only_run(out)
    saved = json.loads((run / "args.json").read_text())
    assert saved["template"] == "plug_tpl"  # the family's template, resolved from the plug-in's registration
    assert json.loads((run / "checkpoint-2" / "adapter_config.json").read_text())["r"] == 2
    ckpt = str(run / "checkpoint-2")

    ppo = ["rlhf", "--rlhf_type", "ppo", "--external_plugins", PLUGIN, "--model", str(tiny_llama)]
    ppo += ["--dataset", str(FIXTURES / "grpo.jsonl"), "--reward_funcs", "plug_reward", "--max_steps", "1"]
    r = run_cli(*ppo, "--max_completion_length", "4", "--output_dir", str(tmp_path / "ppo"), env=env)
    assert r.returncode == 0, r.stderr[-3000:]

    val = tmp_path / "val.jsonl"
    val.write_text(json.dumps({"query": "say 1", "response": "WORD 1"}) + "\n")
    infer = ["infer", "--external_plugins", PLUGIN, "--adapters", ckpt, "--val_dataset", str(val)]
    r = run_cli(*infer, "--metric", "plug_metric", "--max_new_tokens", "3", env=env)
    assert r.returncode == 0 and "plug_metric:" in r.stdout, r.stderr[-3000:]

    used = set(log.read_text().split())
    kinds = {"dataset", "loss", "loss_scale", "callback", "optimizer", "trainer", "tuner", "reward", "metric"}
    assert kinds <= used, kinds - used


def test_a_broken_plugin_shows_its_own_frames_and_one_error_line(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    return 1 / 0\n\nf()\n")
    r = run_cli("infer", "--external_plugins", str(bad))
    assert r.returncode == 2
    assert "bad.py" in r.stderr and "1 / 0" in r.stderr  # the plug-in author's frame
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln]
    assert len(errors) == 1 and "ZeroDivisionError" in errors[0]
