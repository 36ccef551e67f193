"""The package's shape, checked on the source: no import cycle between modules or between packages, no private
name imported across modules, and no write into the parsed flags downstream of the CLI (imports inside functions
count; `if TYPE_CHECKING:` imports do not, they never run)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "lmforge"


def _module(path: Path) -> str:
    parts = path.relative_to(SRC.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[tuple[str, str | None]]]:
    """module -> {(imported module, imported name or None)} for lmforge imports that run."""
    out: dict[str, set[tuple[str, str | None]]] = {}
    for path in SRC.rglob("*.py"):
        tree = ast.parse(path.read_text())
        skip = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                skip |= {id(n) for n in ast.walk(node)}
        found = set()
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("lmforge"):
                found |= {(node.module, a.name) for a in node.names}
            elif isinstance(node, ast.Import):
                found |= {(a.name, None) for a in node.names if a.name.startswith("lmforge")}
        out[_module(path)] = found
    return out


def _resolve(target: str, name: str | None, modules: set[str]) -> str:
    """`from lmforge.train import rows` imports the module lmforge.train.rows."""
    return f"{target}.{name}" if name and f"{target}.{name}" in modules else target


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(graph.get(n, ())):
            if state.get(m) == 1:
                return stack[stack.index(m) :] + [m]
            if m not in state and (found := visit(m)):
                return found
        state[n] = 2
        stack.pop()
        return None

    for n in sorted(graph):
        if n not in state and (found := visit(n)):
            return found
    return None


def _package(module: str) -> str:
    parts = module.split(".")
    return ".".join(parts[:2])


def test_no_import_cycles_between_modules_or_packages():
    imports = _imports()
    modules = set(imports)
    edges = {m: {_resolve(t, n, modules) for t, n in deps} - {m} for m, deps in imports.items()}
    # a package's __init__ importing its own submodules is not a cycle between modules
    edges = {
        m: {d for d in ds if not (d.startswith(m + ".") and m + ".__init__" not in modules)} for m, ds in edges.items()
    }
    assert _cycle(edges) is None, f"module cycle: {' -> '.join(_cycle(edges))}"
    packages: dict[str, set[str]] = {}
    for m, ds in edges.items():
        packages.setdefault(_package(m), set()).update(_package(d) for d in ds if _package(d) != _package(m))
    assert _cycle(packages) is None, f"package cycle: {' -> '.join(_cycle(packages))}"


def test_no_private_name_is_imported_across_modules():
    bad = [
        f"{m}: {t}.{n}"
        for m, deps in _imports().items()
        for t, n in deps
        if (n and n.startswith("_") and n != "__version__") or any(p.startswith("_") for p in t.split(".")[1:])
    ]
    assert not bad, bad


def test_no_write_into_parsed_flags():
    """`args.<group>.<flag> = ...` or setattr on a flag group outside the parser: downstream code reads a prepared
    job (train/job.py) or a resolved model (runargs.py) instead."""
    pattern = re.compile(
        r"\bargs\.(model|template|data|tuner|train|rlhf|generation|infer|export|deploy|app)\.\w+\s*=[^=]"
    )
    hits = [
        f"{p.relative_to(SRC)}:{i}"
        for p in SRC.rglob("*.py")
        if p.parent.name != "args"
        for i, line in enumerate(p.read_text().splitlines(), 1)
        if pattern.search(line) or re.search(r"setattr\(\s*getattr\(args", line)
    ]
    assert not hits, hits
