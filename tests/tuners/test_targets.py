"""tuners/targets.py: tuner flags against the model's module names, from config.json alone (no weights)."""

from __future__ import annotations

import shutil

import pytest

from lmforge.args.groups import TunerArgs
from lmforge.errors import UserError
from lmforge.tuners.targets import check_target_modules


@pytest.fixture(params=["tiny_llama", "tiny_qwen3"])
def config_only(request, tmp_path):
    """The tiny model's config.json without its weights: the check must not need them."""
    src = request.getfixturevalue(request.param)
    shutil.copy(src / "config.json", tmp_path / "config.json")
    return tmp_path


@pytest.mark.parametrize(
    "flags",
    [
        {},
        {"target_modules": ["q_proj", "v_proj"]},
        {"target_modules": ["self_attn.o_proj", "down_proj"], "modules_to_save": ["lm_head", "embed_tokens"]},
        {"target_regex": r".*layers\.1\.mlp\.(up|gate)_proj"},
        {"tuner_type": "llamapro", "llamapro_num_new_blocks": 2},
        {"tuner_type": "reft", "reft_layers": [0, 1]},
        {"tuner_type": "full", "target_modules": ["whatever"]},  # full training does not read the flag
    ],
)
def test_sound_flags_pass(config_only, flags):
    check_target_modules(config_only, TunerArgs(**flags))


@pytest.mark.parametrize(
    "flags,needle",
    [
        ({"target_modules": ["q_proj", "v_prj"]}, "--target_modules v_prj: this model has no module of that name"),
        ({"target_modules": ["mlp"]}, "--target_modules mlp: names"),
        ({"tuner_type": "vera", "target_modules": ["qproj"]}, "--target_modules qproj"),
        ({"target_regex": "q_proj"}, "--target_regex q_proj: matches no module"),  # fullmatch, as peft
        ({"modules_to_save": ["head"]}, "--modules_to_save head: this model has no module"),
        ({"tuner_type": "llamapro", "llamapro_num_new_blocks": 3}, "more than the model's 2 layers"),
        ({"tuner_type": "reft", "reft_layers": [2]}, "--reft_layers [2]: the model has 2 layers"),
    ],
)
def test_wrong_names_fail_in_one_line(config_only, flags, needle):
    with pytest.raises(UserError) as e:
        check_target_modules(config_only, TunerArgs(**flags))
    assert needle in str(e.value) and "\n" not in str(e.value)
    if "target_modules" in flags:
        assert "q_proj" in str(e.value)  # the hint lists the names that exist
