"""Each optional feature, its package hidden, fails in the pre-flight with one line naming the extra."""

from __future__ import annotations

import pytest

from lmforge import cli
from lmforge.features import FEATURES, Feature, check_features, register_feature
from tests.conftest import FIXTURES
from tests.packaging.hide import hide_packages

REACHED = 99


def _reached(_args) -> int:  # noqa: ANN001
    return REACHED  # the command itself would have loaded the model here


def _stub(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """Point the command at _reached so a passing pre-flight is visible and no model loads."""
    cmd = cli.COMMANDS[name]
    monkeypatch.setitem(cli.COMMANDS, name, cli.Command(cmd.summary, cmd.groups, f"{__name__}:_reached"))


SFT = ["--dataset", str(FIXTURES / "pref.jsonl"), "--model", "some/model"]
CASES = {  # argv -> (hidden import, expected line)
    "deepspeed": (
        ["sft", *SFT, "--deepspeed", "zero2"],
        "deepspeed",
        "--deepspeed needs DeepSpeed: pip install 'lmforge[deepspeed]'",
    ),
    "bnb": (
        ["sft", *SFT, "--quant_method", "bnb", "--quant_bits", "4"],
        "bitsandbytes",
        "--quant_method bnb needs bitsandbytes: pip install 'lmforge[quant]'",
    ),
    "quanto": (  # the parent package missing hides its submodule too
        ["sft", *SFT, "--quant_method", "quanto", "--quant_bits", "8"],
        "optimum",
        "--quant_method quanto needs optimum-quanto: pip install 'lmforge[quant]'",
    ),
    "galore": (
        ["sft", *SFT, "--tuner_type", "full", "--use_galore", "true"],
        "galore_torch",
        "--use_galore needs GaLore: pip install 'lmforge[galore]'",
    ),
    "vllm_grpo": (
        ["rlhf", *SFT, "--rlhf_type", "grpo", "--reward_funcs", "format", "--use_vllm", "true"],
        "vllm",
        "--use_vllm needs vLLM: pip install 'lmforge[vllm]'",
    ),
    "serve": (
        ["deploy", "--model", "m"],
        "uvicorn",
        "lmforge deploy needs FastAPI and uvicorn: pip install 'lmforge[serve]'",
    ),
    "app": (["app", "--model", "m"], "gradio", "lmforge app needs Gradio: pip install 'lmforge[app]'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_missing_package_names_the_extra_before_the_model_loads(case, monkeypatch, capsys, tmp_path):
    argv, hidden, line = CASES[case]
    _stub(monkeypatch, argv[0])
    monkeypatch.chdir(tmp_path)
    hide_packages(monkeypatch, hidden)
    code = cli.main(argv)
    err = capsys.readouterr().err.strip()
    assert code == 2 and err == f"lmforge {argv[0]}: error: {line}", err


def test_installed_packages_pass_the_preflight(monkeypatch, capsys, tmp_path):
    _stub(monkeypatch, "sft")
    monkeypatch.chdir(tmp_path)
    assert cli.main(["sft", *SFT, "--quant_method", "bnb", "--quant_bits", "4"]) == REACHED  # installed in dev
    hide_packages(monkeypatch, "deepspeed")
    assert cli.main(["sft", *SFT]) == REACHED  # a missing extra nobody asked for is no error


def test_table_takes_a_new_feature_in_one_entry(monkeypatch):
    monkeypatch.setattr("lmforge.features.FEATURES", list(FEATURES))
    register_feature(
        Feature("lmforge eval-x", "EvalX", ("evalx_pkg_absent",), "evalx", lambda c, _a: "lmforge eval-x" * (c == "x"))
    )
    check_features("sft", None)  # not asked for
    with pytest.raises(Exception, match=r"lmforge eval-x needs EvalX: pip install 'lmforge\[evalx\]'"):
        check_features("x", None)
