"""`--use_vllm` (GPU only) maps ms-swift's flags onto trl's own vLLM modes: the field names are trl's (GRPOConfig
takes them), colocate gets the --vllm_* engine settings, server mode an existing server's address."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from lmforge import cli
from lmforge.args.backend_args import BackendArgs
from lmforge.args.groups import RLHFArgs
from lmforge.train.vllm_rollout import vllm_rollout
from tests.conftest import FIXTURES


@pytest.mark.parametrize(
    "rlhf, want",
    [
        (
            RLHFArgs(rlhf_type="grpo", use_vllm=True),
            {"vllm_mode": "colocate", "vllm_gpu_memory_utilization": 0.5, "vllm_max_model_length": 2048},
        ),
        (
            RLHFArgs(rlhf_type="grpo", use_vllm=True, vllm_mode="server", vllm_server_host="10.0.0.2"),
            {"vllm_mode": "server", "vllm_server_host": "10.0.0.2", "vllm_server_port": 8000},
        ),
    ],
)
def test_use_vllm_fields_are_trls(rlhf, want, tmp_path):
    from trl import GRPOConfig

    backend = BackendArgs(vllm_gpu_memory_utilization=0.5, vllm_max_model_len=2048)
    fields = vllm_rollout(SimpleNamespace(args=SimpleNamespace(rlhf=rlhf, backend=backend)))
    assert want.items() <= fields.items()
    cfg = GRPOConfig(
        output_dir=str(tmp_path), use_vllm=True, bf16=False, use_cpu=True, **fields
    )  # a wrong name is a TypeError here
    assert all(getattr(cfg, k) == v for k, v in want.items())


def test_use_vllm_on_a_cpu_is_one_line(capsys):
    argv = ["rlhf", "--rlhf_type", "grpo", "--reward_funcs", "format", "--use_vllm", "true", "--vllm_mode", "server"]
    code = cli.main([*argv, "--dataset", str(FIXTURES / "grpo.jsonl")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "--use_vllm needs" in err[0], err
