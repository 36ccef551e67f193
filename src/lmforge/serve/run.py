"""`lmforge deploy`: load the model (and named LoRA adapters) once, then serve the OpenAI API with uvicorn."""

from __future__ import annotations

import re
import socket
from pathlib import Path
from typing import Any

from lmforge.errors import UserError


def check_port(host: str, port: int) -> None:
    """A busy port is an error that names it (ms-swift silently moves to another, which breaks clients)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as e:
            raise UserError(f"port {port} on {host} is busy ({e.strerror})", hint="pick another with --port")


def parse_adapters(values: list[str]) -> tuple[list[str], dict[str, str]]:
    """`--adapters PATH` (default adapter, served under the base name) or `name=PATH` pairs (multi-LoRA)."""
    plain, named = [], {}
    for v in values:
        name, sep, path = v.partition("=")
        if sep and not Path(v).exists():
            if not name or not path:
                raise UserError(f"--adapters {v}: expected name=PATH")
            named[name] = path
        else:
            plain.append(v)
    if len(plain) > 1:
        raise UserError("several unnamed --adapters", hint="name them: --adapters a=PATH1 b=PATH2")
    return plain, named


def build_state(args: Any) -> Any:
    """Everything the app needs: model with adapters, template, batcher."""

    from lmforge.infer.generate import load_for_inference
    from lmforge.infer.restore import check_adapter_dir, restore_args, tokenizer_source
    from lmforge.models.loader import resolve_dtype
    from lmforge.models.setup import setup_tokenizer
    from lmforge.serve.app import ServeState
    from lmforge.serve.batcher import Batcher

    plain, named = parse_adapters(args.tuner.adapters)
    if plain and named:
        raise UserError("mix of named and unnamed --adapters", hint="name every adapter: a=PATH1 b=PATH2")
    for path in [*plain, *named.values()]:
        check_adapter_dir(path)
    args.tuner.adapters = plain + list(named.values())
    restore_args(args, args.deploy.load_args)
    setup = setup_tokenizer(args.model, args.template, tokenizer_source(args))
    dtype = resolve_dtype(args.model.torch_dtype)  # bf16 where the hardware has bf16 units (1.7x on this CPU)
    model = load_for_inference(setup.model_dir, plain, dtype=dtype)
    if named:
        from peft import PeftModel

        from lmforge.tuners.adapter import is_adapter_dir

        for name, path in named.items():
            if is_adapter_dir(path):
                raise UserError(
                    f"--adapters {name}={path}: adapter/reft tuners cannot be switched per request",
                    hint=f"serve it as the model: --adapters {path}",
                )

        items = list(named.items())
        if not hasattr(model, "peft_config"):
            model = PeftModel.from_pretrained(model, items[0][1], adapter_name=items[0][0])
            items = items[1:]
        for name, path in items:
            model.load_adapter(path, adapter_name=name)
        model.eval()
    # the embedded model's cache folder carries a hash suffix: serve it under its plain name
    default_name = re.sub(r"-[0-9a-f]{12}$", "", Path(str(setup.model_dir)).name)
    base_name = args.deploy.served_model_name or (Path(plain[0]).name if plain else default_name)
    adapters = {name: name for name in named}
    tok = setup.tokenizer
    stops = setup.template.stop_ids()
    pad = tok.pad_token_id if tok.pad_token_id is not None else stops[0]
    # plain adapters are the default model: requests naming the base get them (peft's default adapter stays on)
    batcher = Batcher(model, stops, pad, max_batch_size=args.deploy.max_batch_size)
    ctx = int(setup.config.get("max_position_embeddings") or 4096)
    if plain:  # the single default adapter is always active: no disable_adapter for base-name requests
        batcher.model = _AlwaysOn(model)
    return ServeState(
        batcher, setup.template, base_name, adapters, ctx, args.deploy.api_key, args.generation.max_new_tokens or 512
    )


class _AlwaysOn:
    """Serve a single unnamed adapter as the model itself (no base-model switch)."""

    def __init__(self, model: Any):
        self._model = model

    def generate(self, **kw: Any) -> Any:
        return self._model.generate(**kw)


def run_deploy(args: Any) -> int:
    import uvicorn

    from lmforge.serve.app import build_app

    d = args.deploy
    check_port(d.host, d.port)
    state = build_state(args)
    names = ", ".join([state.base_name, *state.adapters])
    print(f"[lmforge] serving {names} at http://{d.host}:{d.port}/v1 (batches of up to {d.max_batch_size})")
    uvicorn.run(build_app(state), host=d.host, port=d.port, log_level=d.log_level, timeout_graceful_shutdown=2)
    return 0
