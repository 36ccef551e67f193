"""docker/Dockerfile and docker/k8s manifests, checked against the CLI and pyproject (no container engine here:
the docker CLI is installed but has no daemon, and no registry is reachable to pull a base image)."""

from __future__ import annotations

import json
import re
import shlex

import pytest
import yaml

from lmforge.args.parser import parse_flags
from lmforge.cli import COMMANDS
from tests.conftest import ROOT

DOCKER = ROOT / "docker"


def _instructions() -> dict[str, list[str]]:
    """Dockerfile instruction -> its arguments, in order (continuation lines joined)."""
    text = re.sub(r"\\\n", " ", (DOCKER / "Dockerfile").read_text())
    out: dict[str, list[str]] = {}
    for line in text.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            op, _, rest = line.strip().partition(" ")
            out.setdefault(op.upper(), []).append(rest.strip())
    return out


def test_dockerfile_builds_cpu_or_cuda_non_root_with_volumes_and_entrypoint():
    ins = _instructions()
    args = dict(a.partition("=")[::2] for a in ins["ARG"])
    assert args["TORCH_BUILD"] == "cpu" and args["TORCH_VERSION"] == "2.13.0"
    run = " ".join(ins["RUN"])
    assert 'pip install "torch==${TORCH_VERSION}" --index-url "https://download.pytorch.org/whl/${TORCH_BUILD}"' in run
    assert '".[${EXTRAS}]" "torch==${TORCH_VERSION}"' in run  # torch pinned on the same line, as the README says
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    extras = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert set(args["EXTRAS"].split(",")) <= set(extras)
    assert ins["USER"] == ["lmforge"] and "useradd" in run
    assert json.loads(ins["VOLUME"][0]) == ["/data", "/output"]
    assert json.loads(ins["ENTRYPOINT"][0]) == ["lmforge"]
    for line in (DOCKER / "Dockerfile").read_text().splitlines():  # the usage examples in its header
        m = re.search(r"docker run .* lmforge:\S+ (.*)", line)
        if m and "..." not in m.group(1):
            argv = shlex.split(m.group(1))
            parse_flags(argv[1:], COMMANDS[argv[0]].groups)


def _docs(name: str) -> list[dict]:
    return list(yaml.safe_load_all((DOCKER / "k8s" / name).read_text()))


def _gpu_pod_spec(spec: dict) -> dict:
    (c,) = spec["containers"]
    assert c["resources"]["limits"]["nvidia.com/gpu"] == "1"
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    assert mounts["dshm"] == "/dev/shm" and volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert mounts["data"] == "/data" and mounts["output"] == "/output"  # the image's volumes
    assert spec["securityContext"]["runAsNonRoot"] is True
    return c


def test_pod_is_like_the_seeds():
    (pod,) = _docs("pod.yaml")
    assert pod["kind"] == "Pod"
    _gpu_pod_spec(pod["spec"])


def test_job_runs_sft_from_its_configmap_and_every_flag_exists(tmp_path):
    config_map, job = _docs("sft-job.yaml")
    assert config_map["kind"] == "ConfigMap" and job["kind"] == "Job"
    c = _gpu_pod_spec(job["spec"]["template"]["spec"])
    command, cfg_path, *flags = c["args"]
    mounts = {m["name"]: m["mountPath"] for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    assert volumes["config"]["configMap"]["name"] == config_map["metadata"]["name"]
    key = cfg_path.removeprefix(mounts["config"] + "/")
    local = tmp_path / key
    local.write_text(config_map["data"][key])  # the file the container sees at /config/sft.yaml
    args = parse_flags([str(local), *flags], COMMANDS[command].groups)  # unknown flag or bad value: UserError
    assert command == "sft" and args.tuner.tuner_type == "lora" and args.train.output_dir == "/output"
    assert args.data.dataset == ["/data/train.jsonl"] and args.train.report_to == ["tensorboard"]
