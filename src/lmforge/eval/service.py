"""`lmforge eval --eval_deploy true`: the model behind a `lmforge deploy` that eval starts, evaluates through its
OpenAI API and stops (ms-swift's `swift eval` without `--eval_url`); by default eval runs the engine in-process.

The server is lmforge's own deploy on a free loopback port, started with the flags eval was given for the model
(model, template, adapters, generation, backend), under the sidecar guard (infer/sidecar.py): it is stopped when
eval ends, fails or is interrupted, and when eval is killed the guard ends it (no orphan keeps the port or memory).
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from typing import TYPE_CHECKING

from lmforge.args.parser import dict_tokens

if TYPE_CHECKING:
    from lmforge.args.parser import Args

FLAG = "--eval_deploy"
# the groups eval and deploy share: what the user set there is what the server loads
SHARED_GROUPS = ("model", "template", "tuner", "generation", "backend")
ADAPTER = "adapter"  # the served name of the checkpoint when --compare_base serves the base beside it


def deploy_argv(args: Args, port: int, served_name: str | None) -> list[str]:
    """`python -m lmforge deploy ...` serving what `lmforge eval` would load in-process."""
    e = args.eval
    given = {}
    for group in SHARED_GROUPS:
        for name, value in vars(args.groups[group]).items():
            if name in args.explicit and value is not None:
                given[name] = value
    if e.compare_base:  # the base under its name, the adapter by name: one server, two models
        given["adapters"] = [f"{ADAPTER}={given['adapters'][0]}"]
    given.update(
        host="127.0.0.1",
        port=port,
        max_batch_size=e.eval_num_proc,
        load_args=e.load_args,
        infer_backend=e.infer_backend,
        log_level="warning",
    )
    if served_name:
        given["served_model_name"] = served_name
    return [sys.executable, "-m", "lmforge", "deploy", *dict_tokens(given)]


@contextlib.contextmanager
def owned_server(argv: list[str], port: int, timeout: float) -> Iterator[str]:
    """Run `argv` (a server on `port`) until the block ends; yields its `/v1` URL once `/v1/models` answers."""
    from lmforge.infer.sidecar import HOST, Sidecar

    server = Sidecar("deploy", argv, port, label=FLAG)
    try:
        print(f"[lmforge] {FLAG}: starting lmforge deploy on port {port} (log: {server.log})", file=sys.stderr)
        server.wait_ready(timeout)
        yield f"http://{HOST}:{port}/v1"
    finally:
        server.close()
