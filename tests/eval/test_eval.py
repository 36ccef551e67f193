"""`lmforge eval` driven as a user runs it, on a tiny random llama: exact log-likelihoods, EvalScope's layout,
behaviour checks and --fail_on, base vs adapter side by side, a server by --eval_url, and bad input in one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from lmforge.cli import main


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

    """Letters (general_mcq's default) and choice texts (lm-eval's form, the same csv read as lmforge_mcq with
    "mode": "choice_text") in one run; every choice's log-likelihood equals a direct forward pass."""
    out = tmp_path / "out"
    mcq = {"local_path": str(evaldata / "mcq"), "few_shot_num": 1}
    opts = {"general_mcq": mcq, "lmforge_mcq": {**mcq, "mode": "choice_text"}}
    flags = ["--eval_dataset", "general_mcq", "lmforge_mcq", "--eval_dataset_args", json.dumps(opts)]
    code = main(["eval", "--model", str(tiny_llama), "--torch_dtype", "float32", *flags, "--eval_output_dir", str(out)])
    assert code == 0, capsys.readouterr().err
    run = _one_run(out)
    model_name = tiny_llama.name
    frontend = load_engine(tiny_llama, dtype="float32").frontend
    model = AutoModelForCausalLM.from_pretrained(tiny_llama, dtype=torch.float32)
    tok = frontend.tokenizer
    for ds in ("general_mcq", "lmforge_mcq"):
        preds = [json.loads(x) for x in (run / "predictions" / model_name / f"{ds}_example.jsonl").open()]
        reviews = [json.loads(x) for x in (run / "reviews" / model_name / f"{ds}_example.jsonl").open()]
        assert [p["index"] for p in preds] == ["q1", "q2", "q3"]
        prompt0 = preds[0]["messages"][0]["content"]
        assert "Dev question?" in prompt0  # one few-shot row from example_dev.csv
        # choice_text: the bare question (no lettered choices), the few-shot row answered by its choice's text
        assert ("Answer: yes" in prompt0 and "A. red" not in prompt0) == (ds == "lmforge_mcq")
        for p, r in zip(preds, reviews):
            prompt = frontend.prompt_ids(p["messages"])
            want = {}
            for letter, text in zip("ABC", r["choices"]):
                cont = tok(text if ds == "lmforge_mcq" else letter, add_special_tokens=False)["input_ids"]
                with torch.no_grad():
                    logits = model(torch.tensor([prompt + cont])).logits[0].log_softmax(-1)
                want[letter] = sum(logits[len(prompt) - 1 + i, t].item() for i, t in enumerate(cont))
            assert p["choice_logprobs"] == pytest.approx(want, abs=1e-4)
            best = max(want, key=want.get)
            assert r["prediction"] == best and r["score"]["acc"] == float(best == r["target"])
            if ds == "lmforge_mcq":
                norm = max(want, key=lambda k: want[k] / len(r["choices"]["ABC".index(k)]))
                assert r["score"]["acc_norm"] == float(norm == r["target"])
        report = json.loads((run / "reports" / model_name / f"{ds}.json").read_text())
        assert report["score"] == pytest.approx(sum(r["score"]["acc"] for r in reviews) / 3)
        names = [m["name"] for m in report["metrics"]]
        assert names == (["acc", "acc_norm"] if ds == "lmforge_mcq" else ["acc"])
        assert report["behaviour"] == {}  # nothing generated
        line = json.loads((out / "eval_result.jsonl").read_text().splitlines()[-1])
        assert line["result"][model_name][ds] == report["score"]


def test_adapter_vs_base_behaviour_and_fail_on(lora_ckpt, evaldata, tmp_path, capsys):
    """One CLI run: --adapters restores model and keywords from args.json, --compare_base runs both on one
    engine; a random model never stops, so --fail_on stop_rate<0.95 exits 1 and the token limit held."""
    out = tmp_path / "out"
    flags = _args(
        evaldata, "general_mcq", "general_qa", "lmforge_identity", "humaneval", general_mcq={"mode": "generate"}
    )
    code = main(
        [
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
        ]
    )
    r = capsys.readouterr()
    assert code == 1, r.err[-2000:]
    assert "--fail_on stop_rate<0.95: stop_rate is 0" in r.err and "leaks>1000" not in r.err
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
    assert "lmforge_identity" in r.out and "stop 0%" in r.out


def _rows(run: Path, model: str, kind: str, ds: str) -> list[dict]:
    return [json.loads(x) for x in (run / kind / model / f"{ds}_example.jsonl").read_text().splitlines()]


def test_eval_url_and_eval_deploy_against_lmforge_deploy(tiny_llama, tiny_llama_port, evaldata, tmp_path, capsys):
    """Answers over HTTP equal the local engine's (greedy, same template), and --system reaches the server: from a
    running server (--eval_url) and from the deploy eval starts and stops itself (--eval_deploy true)."""
    flags = _args(evaldata, "general_qa", "general_mcq", general_mcq={"mode": "generate"})
    flags += ["--max_new_tokens", "6", "--system", "Be brief."]
    out = tmp_path / "remote"
    url = f"http://127.0.0.1:{tiny_llama_port}/v1/chat/completions"
    assert main(["eval", "--eval_url", url, *flags, "--eval_output_dir", str(out), "--eval_num_proc", "2"]) == 0
    assert "tiny" in capsys.readouterr().out
    model = ["--model", str(tiny_llama), "--torch_dtype", "float32"]
    local, deploy = tmp_path / "local", tmp_path / "deploy"
    assert main(["eval", *model, *flags, "--eval_output_dir", str(local)]) == 0
    assert main(["eval", *model, *flags, "--eval_deploy", "true", "--eval_output_dir", str(deploy)]) == 0
    err = capsys.readouterr().err
    port = int(err.split("--eval_deploy: starting lmforge deploy on port ")[1].split()[0])
    assert not _listening(port), "the deploy eval started outlived the eval"
    remote, local, deploy = _one_run(out), _one_run(local), _one_run(deploy)
    name = tiny_llama.name  # --eval_deploy reports under the in-process run's name
    for ds in ("general_qa", "general_mcq"):
        want = [p["prediction"] for p in _rows(local, name, "predictions", ds)]
        assert [p["prediction"] for p in _rows(remote, "tiny", "predictions", ds)] == want and any(want)
        assert [p["prediction"] for p in _rows(deploy, name, "predictions", ds)] == want
        assert [r["score"] for r in _rows(deploy, name, "reviews", ds)] == [
            r["score"] for r in _rows(local, name, "reviews", ds)
        ]
        got, want = (json.loads((r / "reports" / name / f"{ds}.json").read_text()) for r in (deploy, local))
        for report in (got, want):
            report["behaviour"].pop("seconds_per_row")
        assert got == want


def _listening(port: int) -> bool:
    import socket

    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


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
        (
            {},
            ["lmforge_mcq", None, "--eval_url", "http://127.0.0.1:9/v1", "--eval_deploy", "true"],
            "--eval_deploy starts a server of --model; --eval_url names a running one",
        ),
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
    sft = ["sft", "--model", str(tiny_llama), "--dataset", str(tmp_path / "train.jsonl"), "--tuner_type", "full"]
    steps = ["--max_steps", "6", "--eval_steps", "3", "--save_steps", "6", "--logging_steps", "3"]
    code = main(
        [
            *sft,
            *steps,
            "--learning_rate",
            "3e-2",
            "--per_device_train_batch_size",
            "8",
            "--gradient_accumulation_steps",
            "1",
            "--torch_dtype",
            "float32",
            *qa,
            "--eval_generation_config",
            '{"max_tokens": 8}',
            "--eval_use_evalscope",
            "true",
            "--output_dir",
            str(tmp_path / "out"),
        ]
    )
    assert code == 0, capsys.readouterr().err[-2000:]
    run = only_run(tmp_path / "out")
    lines = logs(run)
    curve = {x["global_step"]: x["eval_general_qa_Rouge-L-R"] for x in lines if "eval_general_qa_Rouge-L-R" in x}
    assert sorted(curve) == [3, 6]
    losses = [x["loss"] for x in lines if "loss" in x]
    assert losses[-1] < losses[0] - 2  # it trained
    assert (run / "images" / "eval_general_qa_Rouge-L-R.png").is_file()
    out = tmp_path / "after"
    flags = ["--model", str(run / "checkpoint-6"), *qa, "--max_new_tokens", "8", "--eval_output_dir", str(out)]
    assert main(["eval", *flags]) == 0
    report = json.loads(next((_one_run(out) / "reports").glob("*/general_qa.json")).read_text())
    assert curve[6] == pytest.approx(report["score"]), capsys.readouterr().out


def test_eval_honours_enable_thinking(tiny_qwen3, evaldata, tmp_path):
    """--enable_thinking reaches eval's prompts (Qwen3 without thinking gets the empty think block in its prompt),
    and the answer's <think> block is split off and not graded when thinking is on, a leak when it is off."""
    from lmforge.eval.report import behaviour
    from lmforge.eval.scorers import SCORERS
    from lmforge.infer.engine import Completion
    from lmforge.infer.engines import load_engine

    tokens = {}
    for on in ("true", "false"):
        out = tmp_path / on
        flags = [*_args(evaldata, "general_qa"), "--eval_limit", "1", "--max_new_tokens", "2", "--enable_thinking", on]
        assert main(["eval", "--model", str(tiny_qwen3), *flags, "--eval_output_dir", str(out)]) == 0
        preds = _one_run(out) / "predictions" / tiny_qwen3.name / "general_qa_example.jsonl"
        (pred,) = preds.read_text().splitlines()
        tokens[on] = json.loads(pred)["prompt_tokens"]
    engine = load_engine(tiny_qwen3)
    empty_think = engine.frontend.tokenizer("<think>\n\n</think>\n\n", add_special_tokens=False)["input_ids"]
    assert tokens["false"] == tokens["true"] + len(empty_think)

    from lmforge.eval.backends import LocalBackend
    from lmforge.eval.datasets import load_general_qa

    rows = load_general_qa({"local_path": str(evaldata / "qa")})[:1]  # reference: "hello there"
    said = "<think>\nThe user greets me.\n</think>\n\nhello there"
    engine.generate = lambda prompts, cfg, adapter=None: [Completion([1, 2], said, "stop", 5, 2) for _ in prompts]
    for on in (True, False):
        engine.frontend.template.enable_thinking = on
        (review,) = SCORERS["qa"](LocalBackend(engine, "m"), rows, {}, None)
        assert review.answer.reasoning == ("The user greets me." if on else None)
        assert (review.scores["Rouge-L-F"] == 1.0) == on  # graded on the answer alone when thinking is on
        assert behaviour([review.answer])["think_leaks"] == (0 if on else 1)
