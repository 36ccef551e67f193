"""`lmforge eval`'s flags: ms-swift's EvalArguments names, plus lmforge's report switches (--fail_on,
--compare_base). A group like the others in groups.py (a separate file so it stays small); torch-free."""

from __future__ import annotations

from dataclasses import dataclass

from lmforge.args.groups import POSITIVE, flag

FAIL_ON = (
    r"\s*[\w.\-]+\s*(<=|>=|<|>|==|!=)\s*-?\d+(\.\d*)?\s*(,\s*[\w.\-]+\s*(<=|>=|<|>|==|!=)\s*-?\d+(\.\d*)?\s*)*",
    "conditions such as 'stop_rate<0.95,leaks>0'",
)


@dataclass
class EvalArgs:
    eval_dataset: list[str] = flag(
        [],
        "datasets: general_mcq, general_qa, humaneval, lmforge_identity, lmforge_mcq, a plug-in's, or an EvalScope "
        "benchmark (lmforge[eval])",
        kind="eval_dataset",
    )
    eval_backend: str = flag(
        "Native",
        "Native (lmforge's own runner; names only EvalScope knows go to EvalScope); EvalScope (every set through "
        "EvalScope, lmforge[eval]); OpenCompass/VLMEvalKit need their packages",
        choices=("Native", "EvalScope", "OpenCompass", "VLMEvalKit"),
    )
    eval_limit: int | None = flag(None, "rows per subset (default: all)", **POSITIVE)
    eval_dataset_args: str | None = flag(
        None,
        'JSON per dataset, e.g. \'{"general_mcq": {"local_path": "mcq", "subset_list": ["example"]}}\'',
        kind="json",
        json_type=dict,
    )
    eval_generation_config: str | None = flag(
        None, 'JSON generation settings, e.g. \'{"max_tokens": 256, "temperature": 0}\'', kind="json", json_type=dict
    )
    eval_output_dir: str = flag("eval_output", "results go to <dir>/native/<time>/", kind="dir_out")
    eval_num_proc: int = flag(16, "rows per batch on the local engine; concurrent requests with --eval_url", **POSITIVE)
    eval_url: str | None = flag(
        None, "an OpenAI-compatible server (…/v1) instead of a local model", pattern=(r"https?://\S+", "an http(s) URL")
    )
    eval_deploy: bool = flag(
        False,
        "serve the model with a lmforge deploy that eval starts and stops, and evaluate through its API (ms-swift's "
        "way without --eval_url); default: the engine in-process",
    )
    api_key: str | None = flag(None, "API key sent to --eval_url")
    extra_eval_args: str | None = flag(
        None, "JSON passed to EvalScope's TaskConfig (its delegate only)", kind="json", json_type=dict
    )
    fail_on: str | None = flag(None, "exit 1 when a condition holds, e.g. 'stop_rate<0.95,leaks>0'", pattern=FAIL_ON)
    compare_base: bool = flag(False, "also run the base model (adapter off) on the same rows: a side-by-side report")
    load_args: bool = flag(True, "restore model, template and system prompt from the checkpoint's args.json")
    infer_backend: str = flag(
        "pt",
        "the local engine: pt (PyTorch), vllm, sglang, lmdeploy (their servers, see --infer_backend_python)",
        choices=("pt", "transformers", "vllm", "sglang", "lmdeploy"),
    )


@dataclass
class TrainEvalArgs:
    """sft's evaluation sets, scored on the current weights at every evaluation (--eval_steps)."""

    eval_dataset: list[str] = flag(
        [],
        "score these sets at each evaluation: general_qa, lmforge_identity, ... (logged eval_<ds>_<metric>)",
        kind="eval_dataset",
    )
    eval_dataset_args: str | None = flag(None, "JSON per dataset (as lmforge eval)", kind="json", json_type=dict)
    eval_limit: int | None = flag(None, "rows per subset at each evaluation (default: all)", **POSITIVE)
    eval_generation_config: str | None = flag(
        None, "JSON generation settings, e.g. '{\"max_tokens\": 64}'", kind="json", json_type=dict
    )
    eval_use_evalscope: bool = flag(False, "ms-swift's switch; accepted: lmforge's own runner scores the sets")
