"""`--tuner_type adapter`: bottleneck adapters (Houlsby et al.) after each decoder block's MLP, as ms-swift's
`adapter` tuner (`--adapter_length`, `--adapter_act`). peft has no bottleneck adapter and AdapterHub's `adapters`
package pins transformers 4.x, so this is the small piece written here.

Each adapter adds up(act(down(h))) to the MLP output, with `up` zero-initialised so training starts from the base
model exactly. A forward hook does the adding, so the base model's module names and weights stay untouched: a
checkpoint holds only the adapter weights (`adapter_model.safetensors`) and an `adapter_config.json` that names this
tuner. Adapters add layers, so there is nothing to merge into the base weights.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lmforge.errors import UserError

TUNER_KEY = "lmforge_tuner"
CHILD = "lmforge_adapter"
ACTS = {"gelu": nn.GELU, "relu": nn.ReLU, "silu": nn.SiLU, "tanh": nn.Tanh}


class BottleneckAdapter(nn.Module):
    def __init__(self, hidden: int, length: int, act: str):
        super().__init__()
        self.down = nn.Linear(hidden, length)
        self.act = ACTS[act]()
        self.up = nn.Linear(length, hidden)
        nn.init.zeros_(self.up.weight)  # identity at the start
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x.to(self.down.weight.dtype)))).to(x.dtype)


def _add_output(module: nn.Module, args: tuple, output: Any) -> Any:
    return output + getattr(module, CHILD)(output)


def add_adapters(model: nn.Module, length: int, act: str) -> int:
    """Attach an adapter to every decoder block's MLP and freeze everything else; returns how many."""
    if act not in ACTS:
        raise UserError(f"--adapter_act {act}: unknown activation", hint=f"use one of {', '.join(ACTS)}")
    model.requires_grad_(False)
    hidden = model.config.hidden_size
    ref = next(model.parameters())
    count = 0
    for name, module in model.named_modules():
        if name.endswith(".mlp") and not hasattr(module, CHILD):
            # trained weights stay fp32 whatever the base dtype (bf16 base + fp32 adapters under autocast)
            module.add_module(CHILD, BottleneckAdapter(hidden, length, act).to(ref.device, torch.float32))
            module.register_forward_hook(_add_output)
            count += 1
    if not count:
        raise UserError("--tuner_type adapter: no decoder block has an `mlp` module", hint="use --tuner_type lora")
    model.lmforge_adapter_config = {TUNER_KEY: "adapter", "adapter_length": length, "adapter_act": act}
    return count


def add_hooked(model: nn.Module, tuner: Any) -> None:
    """--tuner_type adapter or reft (the two tuners applied by forward hooks, saved and loaded here), from the
    tuner table."""
    from lmforge.tuners.table import get_tuner

    get_tuner(tuner.tuner_type).apply(model, tuner)


def is_adapter_dir(path: str | Path) -> bool:
    """A checkpoint of --tuner_type adapter or reft (not a peft adapter)."""
    cfg = Path(path) / "adapter_config.json"
    return cfg.is_file() and json.loads(cfg.read_text()).get(TUNER_KEY) in ("adapter", "reft")


def _own(key: str) -> bool:
    from lmforge.tuners.reft import CHILD as REFT_CHILD

    return f".{CHILD}." in key or f".{REFT_CHILD}." in key


def has_adapters(model: nn.Module) -> bool:
    return hasattr(model, "lmforge_adapter_config")


def save_adapters(model: nn.Module, path: str | Path) -> None:
    from safetensors.torch import save_file

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous() for k, v in model.state_dict().items() if _own(k)}
    save_file(state, str(path / "adapter_model.safetensors"))
    (path / "adapter_config.json").write_text(json.dumps(model.lmforge_adapter_config, indent=2))


def load_adapters(model: nn.Module, path: str | Path) -> nn.Module:
    """Attach adapters as saved in `path` and load their weights (strictly: every adapter weight must match)."""
    from types import SimpleNamespace

    from safetensors.torch import load_file

    cfg = json.loads((Path(path) / "adapter_config.json").read_text())
    if not has_adapters(model):
        add_hooked(
            model, SimpleNamespace(tuner_type=cfg[TUNER_KEY], **{k: v for k, v in cfg.items() if k != TUNER_KEY})
        )
    state = load_file(str(Path(path) / "adapter_model.safetensors"))
    expected = {k for k in model.state_dict() if _own(k)}
    if set(state) != expected:
        raise UserError(f"{path}: adapter weights do not fit this model", hint="use the base model it was trained on")
    model.load_state_dict(state, strict=False)
    return model
