"""Names copied into groups.py (it may not import torch or transformers) match the libraries they come from."""

from __future__ import annotations

import dataclasses

import pytest

from lmforge.args import groups
from lmforge.args.groups import TunerArgs, flag


def _choices(cls: type, name: str) -> tuple:
    return next(f.metadata["choices"] for f in dataclasses.fields(cls) if f.name == name)


def test_copied_names_match_their_sources():
    from transformers import SchedulerType
    from transformers.integrations.integration_utils import INTEGRATION_TO_CALLBACK

    from lmforge.train.distributed import ZERO_NAMES
    from lmforge.tuners.adapter import ACTS
    from lmforge.tuners.reft import KINDS

    assert groups.LR_SCHEDULERS == tuple(s.value for s in SchedulerType)
    assert set(groups.REPORTERS) == {*INTEGRATION_TO_CALLBACK, "none"}
    assert groups.ZERO_PRESETS == ZERO_NAMES
    assert set(_choices(TunerArgs, "adapter_act")) == set(ACTS)
    assert _choices(TunerArgs, "reft_intervention_type") == KINDS


def test_a_misspelt_check_is_refused():
    with pytest.raises(TypeError, match="unknown check"):
        flag(1, "x", minimum=1)
