"""`lmforge eval` driven as a user runs it, on a tiny random llama: exact log-likelihoods, EvalScope's layout,
behaviour checks and --fail_on, base vs adapter side by side, a server by --eval_url, and bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.cli import main
from tests.conftest import run_cli
from tests.serve.conftest import deployed

MCQ_VAL = "id,question,A,B,C,answer\nq1,Which is a colour?,red,dog,run,A\nq2,2 + 2 = ?,3,4,5,B\nq3,Pick C,x,y,z,C\n"
MCQ_DEV = "id,question,A,B,C,answer\nd1,Dev question?,yes,no,maybe,A\n"
QA = [{"query": "Say hello", "response": "hello there"}, {"question": "Name a fruit", "answer": "an apple"}]


@pytest.fixture(scope="module")
def evaldata(tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("evaldata")
    (d / "mcq").mkdir()
    (d / "mcq" / "example_val.csv").write_text(MCQ_VAL)
    (d / "mcq" / "example_dev.csv").write_text(MCQ_DEV)
    (d / "qa").mkdir()
    (d / "qa" / "example.jsonl").write_text("".join(json.dumps(r) + "\n" for r in QA))
    return d


@pytest.fixture(scope="module")
def lora_ckpt(tmp_path_factory, tiny_llama) -> Path:
    """A LoRA with random B (so it changes answers) and the args.json a self-cognition run writes."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from lmforge.runargs import write_run_args

    run = tmp_path_factory.mktemp("run") / "v0-demo"
    ckpt = run / "checkpoint-5"
    torch.manual_seed(1)
    model = AutoModelForCausalLM.from_pretrained(tiny_llama)
    cfg = LoraConfig(r=4, lora_alpha=64, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(model, cfg).save_pretrained(ckpt)
    meta = {"model_dir": str(tiny_llama), "system": "You are lmforge-bot.", "model_name": ["小锻", "lmforge-bot"]}
    write_run_args(run / "args.json", {**meta, "model_author": ["lmforge", "lmforge"], "run_dir": str(run)})
    return ckpt


def _args(evaldata: Path, *datasets: str, **extra: dict) -> list[str]:
    opts = {
        "general_mcq": {"local_path": str(evaldata / "mcq"), **extra.get("general_mcq", {})},
        "general_qa": {"local_path": str(evaldata / "qa")},
    }
    return ["--eval_dataset", *datasets, "--eval_dataset_args", json.dumps({d: opts[d] for d in datasets if d in opts})]


def _one_run(out: Path) -> Path:
    (run,) = (out / "native").iterdir()
    return run


def test_mcq_loglikelihood_equals_a_direct_forward_pass(tiny_llama, evaldata, tmp_path, capsys):
    import torch
    from transformers import AutoModelForCausalLM

    from lmforge.infer.engines import load_engine

    out = tmp_path / "out"
    flags = _args(evaldata, "general_mcq", general_mcq={"few_shot_num": 1})
    code = main(["eval", "--model", str(tiny_llama), "--torch_dtype", "float32", *flags, "--eval_output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    run = _one_run(out)
    model_name = tiny_llama.name
    preds = [json.loads(x) for x in (run / "predictions" / model_name / "general_mcq_example.jsonl").open()]
    reviews = [json.loads(x) for x in (run / "reviews" / model_name / "general_mcq_example.jsonl").open()]
    assert [p["index"] for p in preds] == ["q1", "q2", "q3"]
    assert "Dev question?" in preds[0]["messages"][0]["content"]  # one few-shot row from example_dev.csv
    frontend = load_engine(tiny_llama, dtype="float32").frontend
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    tok = frontend.tokenizer
    for p, r in zip(preds, reviews):
        prompt = frontend.prompt_ids(p["messages"])
        want = {}
        for letter in "ABC":
            cont = tok(letter, add_special_tokens=False)["input_ids"]
            with torch.no_grad():
                logits = model(torch.tensor([prompt + cont])).logits[0].log_softmax(-1)
            want[letter] = sum(logits[len(prompt) - 1 + i, t].item() for i, t in enumerate(cont))
        assert p["choice_logprobs"] == pytest.approx(want, abs=1e-4)
        best = max(want, key=want.get)
        assert r["prediction"] == best and r["score"]["acc"] == float(best == r["target"])
    report = json.loads((run / "reports" / model_name / "general_mcq.json").read_text())
    assert report["score"] == pytest.approx(sum(r["score"]["acc"] for r in reviews) / 3)
    assert report["behaviour"] == {}  # nothing generated
    line = json.loads((out / "eval_result.jsonl").read_text().splitlines()[-1])
    assert line["result"][model_name]["general_mcq"] == report["score"]


def test_adapter_vs_base_behaviour_and_fail_on(lora_ckpt, evaldata, tmp_path):
    """One CLI run: --adapters restores model and keywords from args.json, --compare_base runs both on one
    engine; a random model never stops, so --fail_on stop_rate<0.95 exits 1 and the token limit held."""
    out = tmp_path / "out"
    flags = _args(
        evaldata, "general_mcq", "general_qa", "lmforge_identity", "humaneval", general_mcq={"mode": "generate"}
    )
    r = run_cli(
        "eval",
        "--adapters",
        str(lora_ckpt),
        *flags,
        "--compare_base",
        "true",
        "--eval_limit",
        "2",
        "--max_new_tokens",
        "5",
        "--torch_dtype",
        "float32",
        "--fail_on",
        "stop_rate<0.95,leaks>1000",
        "--eval_output_dir",
        str(out),
    )
    assert r.returncode == 1, r.stderr[-2000:]
    assert "--fail_on stop_rate<0.95: stop_rate is 0" in r.stderr and "leaks>1000" not in r.stderr
    run = _one_run(out)
    base, adapted = run / "reports" / "tiny-llama0", run / "reports" / "v0-demo-checkpoint-5"
    for side in (base, adapted):
        assert sorted(p.name for p in side.iterdir()) == [
            "general_mcq.json",
            "general_qa.json",
            "humaneval.json",
            "lmforge_identity.json",
        ]
    qa = json.loads((adapted / "general_qa.json").read_text())
    assert qa["metrics"][0]["name"] == "Rouge-L-R" and qa["metrics"][0]["num"] == 2
    assert qa["behaviour"]["stop_rate"] == 0 and qa["behaviour"]["max_tokens"] == 5
    preds = [json.loads(x) for x in (run / "predictions" / "v0-demo-checkpoint-5" / "general_qa_example.jsonl").open()]
    assert all(p["finish_reason"] == "length" and p["completion_tokens"] == 5 for p in preds)
    base_preds = [json.loads(x) for x in (run / "predictions" / "tiny-llama0" / "general_qa_example.jsonl").open()]
    assert [p["prediction"] for p in preds] != [p["prediction"] for p in base_preds]  # the adapter is on
    assert len(list((run / "reviews" / "tiny-llama0").glob("lmforge_identity_*.jsonl"))) == 2  # en and zh
    code = [json.loads(x) for x in (run / "reviews" / "tiny-llama0" / "humaneval_openai_humaneval.jsonl").open()]
    assert len(code) == 2 and all(c["score"] == {"pass@1": 0.0} for c in code)  # 5 random tokens pass nothing
    code_preds = (run / "predictions" / "tiny-llama0" / "humaneval_openai_humaneval.jsonl").read_text()
    assert all(json.loads(x)["result"].startswith("failed") for x in code_preds.splitlines())
    md = (run / "compare.md").read_text()
    assert "| general_qa | Rouge-L-R |" in md and "| tiny-llama0 | v0-demo-checkpoint-5 | delta |" in md
    assert (run / "compare.png").stat().st_size > 5000
    line = json.loads((lora_ckpt / "eval_result.jsonl").read_text().splitlines()[-1])
    assert set(line["result"]) == {"tiny-llama0", "v0-demo-checkpoint-5"}
    assert "lmforge_identity" in r.stdout and "stop 0%" in r.stdout


def test_eval_url_against_lmforge_deploy(tiny_llama, evaldata, tmp_path, capsys):
    """Answers over HTTP equal the local engine's (greedy, same template), and --system reaches the server."""
    flags = [*_args(evaldata, "general_qa"), "--max_new_tokens", "6", "--system", "Be brief."]
    out = tmp_path / "remote"
    with deployed(tiny_llama) as port:
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        assert main(["eval", "--eval_url", url, *flags, "--eval_output_dir", str(out), "--eval_num_proc", "2"]) == 0
    local = tmp_path / "local"
    assert (
        main(["eval", "--model", str(tiny_llama), "--torch_dtype", "float32", *flags, "--eval_output_dir", str(local)])
        == 0
    )
    remote_rows = (_one_run(out) / "predictions" / "tiny" / "general_qa_example.jsonl").read_text().splitlines()
    local_rows = (_one_run(local) / "predictions" / tiny_llama.name / "general_qa_example.jsonl").read_text()
    got = [json.loads(x)["prediction"] for x in remote_rows]
    assert got == [json.loads(x)["prediction"] for x in local_rows.splitlines()] and any(got)
    assert "tiny" in capsys.readouterr().out


@pytest.mark.parametrize(
    "files, flags, needle",
    [
        ({"m/x_val.csv": "id,question,A,B\n1,q,a,b\n"}, ["general_mcq", "m"], "x_val.csv:1: no 'answer' column"),
        (
            {"m/x_val.csv": "id,question,A,B,answer\n1,q,a,b,B\n2,q,a,b,D\n"},
            ["general_mcq", "m"],
            "x_val.csv:3: answer",
        ),
        ({"q/x.jsonl": '{"query": "hi"}\n'}, ["general_qa", "q"], "x.jsonl:1: response: missing"),
        ({}, ["general_mqc", None], "did you mean general_mcq"),
        ({}, ["lmforge_mcq", None, "--eval_url", "http://127.0.0.1:9/v1"], "cannot reach it"),
        ({}, ["lmforge_mcq", None, "--eval_generation_config", '{"max_len": 3}'], "unknown key 'max_len'"),
        ({}, ["lmforge_mcq", None, "--compare_base", "true"], "--compare_base needs --adapters"),
        ({}, ["lmforge_mcq", None, "--fail_on", "stop_rate<<1"], "--fail_on"),
        ({}, ["lmforge_mcq", None, "--fail_on", "stop_rat<1"], "--fail_on stop_rat: unknown"),
    ],
)
def test_bad_input_is_one_line_before_any_model_loads(tmp_path, capsys, files, flags, needle):
    for name, text in files.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        (tmp_path / name).write_text(text)
    name, sub, *rest = flags
    opts = ["--eval_dataset_args", json.dumps({name: {"local_path": str(tmp_path / sub)}})] if sub else []
    code = main(["eval", "--model", str(tmp_path / "no-model-needed"), "--eval_dataset", name, *opts, *rest])
    err = capsys.readouterr().err
    assert code != 0 and needle in err and len(err.strip().splitlines()) == 1, err


def test_sft_scores_eval_sets_during_training(tiny_llama, tmp_path, capsys):
    """--eval_dataset during sft: scored at every --eval_steps on the weights being trained (the last score equals
    `lmforge eval` on the checkpoint saved at that step), logged as eval_<dataset>_<metric> and plotted."""
    from tests.train.helpers import logs, only_run

    rows = [{"query": f"Question number {i}?", "response": "I am lmforge bot."} for i in range(24)]
    (tmp_path / "train.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "qa").mkdir()
    held_out = [{"query": f"Another question {i}?", "response": "I am lmforge bot."} for i in (51, 52, 53)]
    (tmp_path / "qa" / "held.jsonl").write_text("".join(json.dumps(r) + "\n" for r in held_out))
    qa = [
        "--eval_dataset",
        "general_qa",
        "--eval_dataset_args",
        json.dumps({"general_qa": {"local_path": str(tmp_path / "qa")}}),
    ]
    r = run_cli(
        "sft",
        "--model",
        str(tiny_llama),
        "--dataset",
        str(tmp_path / "train.jsonl"),
        "--tuner_type",
        "full",
        "--max_steps",
        "8",
        "--learning_rate",
        "3e-2",
        "--per_device_train_batch_size",
        "8",
        "--gradient_accumulation_steps",
        "1",
        "--eval_steps",
        "4",
        "--save_steps",
        "8",
        "--logging_steps",
        "4",
        "--torch_dtype",
        "float32",
        *qa,
        "--eval_generation_config",
        '{"max_tokens": 8}',
        "--eval_use_evalscope",
        "true",
        "--output_dir",
        str(tmp_path / "out"),
    )
    assert r.returncode == 0, r.stderr[-2000:]
    run = only_run(tmp_path / "out")
    lines = logs(run)
    curve = {x["global_step"]: x["eval_general_qa_Rouge-L-R"] for x in lines if "eval_general_qa_Rouge-L-R" in x}
    assert sorted(curve) == [4, 8]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert losses[-1] < losses[0] - 2  # it trained
    assert (run / "images" / "eval_general_qa_Rouge-L-R.png").is_file()
    out = tmp_path / "after"
    flags = ["--model", str(run / "checkpoint-8"), *qa, "--max_new_tokens", "8", "--eval_output_dir", str(out)]
    assert main(["eval", *flags]) == 0
    report = json.loads(next((_one_run(out) / "reports").glob("*/general_qa.json")).read_text())
    assert curve[8] == pytest.approx(report["score"]), capsys.readouterr().out
