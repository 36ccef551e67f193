"""The side-by-side report of two models on the same rows (base vs adapter): per-dataset scores and their delta,
and the rows whose verdict flipped, as compare.md (also printed) and compare.png."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lmforge.errors import writing
from lmforge.eval.scorers import Review


@dataclass(frozen=True)
class Side:
    """One model's results: its name, and per dataset (name, main metric, score, reviews)."""

    name: str
    rows: list[tuple[str, str, float, list[Review]]]


def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split()).replace("|", "/")
    return text if len(text) <= n else text[: n - 1] + "…"


def flipped(main: str, a: list[Review], b: list[Review]) -> list[tuple[Review, Review]]:
    """Rows (same subset and id) right in one run and wrong in the other: the main score crossed 0.5."""
    by_key = {(r.sample.subset, r.sample.id): r for r in a}
    out = []
    for rb in b:
        ra = by_key.get((rb.sample.subset, rb.sample.id))
        if ra is not None and (ra.scores[main] >= 0.5) != (rb.scores[main] >= 0.5):
            out.append((ra, rb))
    return out


def markdown(base: Side, other: Side) -> str:
    lines = [
        f"| dataset | metric | {base.name} | {other.name} | delta |",
        "|---|---|---:|---:|---:|",
    ]
    flips: list[str] = []
    for (ds, main, sa, ra), (_, _, sb, rb) in zip(base.rows, other.rows):
        lines.append(f"| {ds} | {main} | {sa:.4f} | {sb:.4f} | {sb - sa:+.4f} |")
        for x, y in flipped(main, ra, rb):
            turn = "fixed" if y.scores[main] >= 0.5 else "broken"
            # the question itself: the last paragraph (after any few-shot examples), its first line
            question = (x.sample.messages[-1]["content"].split("\n\n")[-1].splitlines() or [""])[0]
            flips.append(
                f"| {ds} | {x.sample.subset}/{x.sample.id} | {turn} | {_short(question, 40)} | "
                f"{_short(x.extracted or x.prediction)} | {_short(y.extracted or y.prediction)} |"
            )
    text = "\n".join(lines)
    if flips:
        text += (
            f"\n\nFlipped rows ({len(flips)}):\n\n| dataset | row | | question | {base.name} | {other.name} |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(flips)
        )
    return text


def plot(path: Path, base: Side, other: Side) -> None:
    """Grouped bars of the main score per dataset."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    names = [ds for ds, *_ in base.rows]
    fig = Figure(figsize=(max(4, 1.6 * len(names) + 2), 3.6), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot()
    x = range(len(names))
    for shift, side in ((-0.2, base), (0.2, other)):
        bars = ax.bar([i + shift for i in x], [s for _, _, s, _ in side.rows], width=0.4, label=side.name)
        ax.bar_label(bars, fmt="%.2f", fontsize=8)
    ax.set_xticks(list(x), [f"{ds}\n({m})" for ds, m, *_ in base.rows], fontsize=8)
    ax.set_ylim(0, 1.1)
    ax.set_ylabel("score")
    ax.legend(fontsize=8, loc="upper left")
    ax.grid(axis="y", alpha=0.3)
    fig.subplots_adjust(left=0.1, right=0.98, bottom=0.2, top=0.95)
    with writing("a plot", path):
        fig.savefig(path)


def write_compare(run_dir: Path, base: Side, other: Side) -> str:
    text = markdown(base, other)
    path = run_dir / "compare.md"
    with writing("the comparison", path):
        path.write_text(f"# {base.name} vs {other.name}\n\n{text}\n", encoding="utf-8")
    plot(run_dir / "compare.png", base, other)
    return text
