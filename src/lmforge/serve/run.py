"""`lmforge deploy`: load the model (and named LoRA adapters) once, then serve the OpenAI API with uvicorn."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from lmforge.infer.engine import sampling_from_args
from lmforge.net import check_port
from lmforge.runargs import resolve_model

if TYPE_CHECKING:
    from lmforge.args.parser import Args
    from lmforge.serve.state import ServeState


def build_state(args: Args) -> ServeState:
    """Everything the app needs: the engine (model, adapters, scheduler), served names, defaults."""
    from lmforge.infer.engines import engine_from
    from lmforge.serve.state import ServeState

    d = args.deploy
    # `--adapters PATH`: the default adapter, served under the base name; `name=PATH` pairs: multi-LoRA by name
    resolved = resolve_model(args, d.load_args, allow_named=True)
    engine = engine_from(resolved, d.infer_backend, d.max_batch_size, args.backend)
    # the embedded model's cache folder carries a hash suffix: serve it under its plain name
    plain = resolved.adapters.plain
    default_name = re.sub(r"-[0-9a-f]{12}$", "", Path(engine.model_path).name)
    base_name = d.served_model_name or (Path(plain[0]).name if plain else default_name)
    defaults = sampling_from_args(args.generation, max_new_tokens=512, temperature=1.0)  # 1.0: the OpenAI default
    names = {name: name for name in resolved.adapters.named}
    return ServeState(engine, base_name, names, defaults, d.api_key, d.allowed_local_media_path)


def run_deploy(args: Args) -> int:
    import uvicorn

    from lmforge.serve.app import build_app
    from lmforge.serve.tasks_routes import task_serving

    d = args.deploy
    check_port(d.host, d.port)
    served = task_serving(args)  # a classifier/embedding checkpoint: its runner instead of a chat engine
    state = served.state if served else build_state(args)
    names = ", ".join([state.base_name, *state.adapters])
    device = str(next(served.runner.model.parameters()).device) if served else state.engine.capabilities.device
    print(f"[lmforge] serving {names} at http://{d.host}:{d.port}/v1 on {device} (batches of up to {d.max_batch_size})")
    app = build_app(state, served.runner if served else None)
    uvicorn.run(app, host=d.host, port=d.port, log_level=d.log_level, timeout_graceful_shutdown=2)
    return 0
