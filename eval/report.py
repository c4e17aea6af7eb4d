"""Benchmark results: one table on the terminal, and JSON, CSV and a PNG plot on disk (atomically)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import atomic_write, atomic_write_text
from ..metrics import summarize
from .runner import EpisodeRecord


def summarize_record(record: EpisodeRecord, k: int = 10, bootstrap_samples: int = 1000) -> dict[str, Any]:
    summary = summarize(record.ranks, k, bootstrap_samples=bootstrap_samples)
    summary.update(
        repeated_question_rate=record.repeated_question_rate,
        invalid_questions=record.invalid_questions,
        passes=record.passes,
    )
    return summary


def format_table(rows: dict[str, dict], k: int = 10, rounds: tuple[int, ...] | None = None) -> str:
    """One line per run: Hits@k at each round (with the 95% interval at rounds 0, 5, 10), BRI, ranks."""
    if not rows:
        return "(no results)"
    n_rounds = next(iter(rows.values()))["rounds"]
    rounds = rounds or tuple(range(n_rounds + 1))
    name_w = max(12, *(len(n) for n in rows))
    head = (f"{'run':<{name_w}} " + " ".join(f"{'R' + str(r):>5}" for r in rounds)
            + f" {'BRI':>6} {'mean r':>8} {'med r':>6} {'rep%':>5}")
    lines = [f"Hits@{k} (%) per round, ChatIR cumulative protocol", head, "-" * len(head)]
    for name, s in rows.items():
        hits = s[f"hits@{k}"]
        cells = " ".join(f"{hits[r]:5.1f}" for r in rounds)
        lines.append(
            f"{name:<{name_w}} {cells} {s.get('bri', float('nan')):6.3f} {s['mean_rank'][-1]:8.1f} "
            f"{s['median_rank'][-1]:6.0f} {s.get('repeated_question_rate', 0.0):5.1f}"
        )
    lines.append("")
    lines.append("95% bootstrap intervals over targets (rounds 0 / 5 / 10):")
    for name, s in rows.items():
        lo, hi = s[f"hits@{k}_ci95"]
        picks = [r for r in (0, 5, 10) if r <= n_rounds]
        lines.append(f"  {name:<{name_w}} " + "   ".join(f"R{r} [{lo[r]:.1f}, {hi[r]:.1f}]" for r in picks))
    return "\n".join(lines)


def markdown_table(rows: dict[str, dict], k: int = 10, rounds: tuple[int, ...] = (0, 1, 2, 3, 5, 10)) -> str:
    """A Markdown table of cumulative Hits@k at selected rounds with 95% intervals.

    Further columns: the last round's non-cumulative Hits@k, BRI and final mean rank.
    """
    n_rounds = next(iter(rows.values()))["rounds"] if rows else 0
    rounds = tuple(r for r in rounds if r <= n_rounds)
    head = ("| run | " + " | ".join(f"R{r}" for r in rounds)
            + f" | per-round R{n_rounds} | BRI | mean rank R{n_rounds} | repeats % |")
    lines = [head, "|" + " --- |" * (len(rounds) + 5)]
    for name, s in rows.items():
        lo, hi = s[f"hits@{k}_ci95"]
        cells = " | ".join(f"{s[f'hits@{k}'][r]:.1f} [{lo[r]:.1f}, {hi[r]:.1f}]" for r in rounds)
        lines.append(f"| {name} | {cells} | {s[f'per_round_hits@{k}'][-1]:.1f} | {s.get('bri', float('nan')):.3f} | "
                     f"{s['mean_rank'][-1]:.1f} | {s.get('repeated_question_rate', 0.0):.1f} |")
    return "\n".join(lines)


def write_results(out_dir: str | Path, rows: dict[str, dict], config: dict, k: int = 10, title: str = "",
                  plot: bool = True) -> dict[str, Path]:
    """results.json (config + every figure), hits_at_10.csv (one row per run and round), results.md, hits_at_10.png.

    ``plot=False`` skips the PNG (the slowest of the four), for the rewrites after each of a benchmark's runs.
    """
    out = Path(out_dir)
    paths = {"json": out / "results.json", "csv": out / f"hits_at_{k}.csv", "png": out / f"hits_at_{k}.png",
             "md": out / "results.md"}
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(paths["json"], json.dumps({"config": config, "results": rows}, indent=2, default=_jsonable))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["run", "round", f"hits@{k}", "ci95_low", "ci95_high", f"per_round_hits@{k}", "mean_rank", "median_rank",
                     "bri"])
    for name, s in rows.items():
        lo, hi = s[f"hits@{k}_ci95"]
        for r in range(s["rounds"] + 1):
            writer.writerow([name, r, f"{s[f'hits@{k}'][r]:.3f}", f"{lo[r]:.3f}", f"{hi[r]:.3f}",
                             f"{s[f'per_round_hits@{k}'][r]:.3f}", f"{s['mean_rank'][r]:.2f}", f"{s['median_rank'][r]:.1f}",
                             f"{s.get('bri', float('nan')):.4f}"])
    atomic_write_text(paths["csv"], buf.getvalue())
    if rows:
        atomic_write_text(paths["md"],
                          f"Hits@{k} (%) with 95% bootstrap intervals over targets\n\n" + markdown_table(rows, k) + "\n")
    if plot:
        plot_hits(rows, paths["png"], k, title)
    return paths


def _split_run_name(name: str) -> tuple[str, str]:
    """``"world/questioner"`` -> (world, questioner); a name without a world goes to the unnamed panel."""
    world, sep, questioner = name.partition("/")
    return (world, questioner) if sep else ("", name)


def plot_panels(rows: dict[str, dict]) -> dict[str, list[tuple[str, dict]]]:
    """The plot's layout: world -> [(questioner, summary), ...], worlds and runs in the order of ``rows``."""
    panels: dict[str, list[tuple[str, dict]]] = {}
    for name, summary in rows.items():
        world, questioner = _split_run_name(name)
        panels.setdefault(world, []).append((questioner, summary))
    return panels


def plot_hits(rows: dict[str, dict], path: Path, k: int = 10, title: str = "") -> None:
    """Hits@k per round: one panel per world, one colour per questioner in every panel, 95% bands.

    Runs are named ``world/questioner`` (as ``chatir benchmark`` names them). The legend sits outside
    the panels, to their right, so it never hides a line.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = plot_panels(rows)
    questioners = list(dict.fromkeys(q for runs in panels.values() for q, _ in runs))
    palette = plt.get_cmap("tab10" if len(questioners) <= 10 else "tab20")
    colour = {q: palette(i % palette.N) for i, q in enumerate(questioners)}
    n = max(1, len(panels))
    fig, axes = plt.subplots(1, n, figsize=(4.2 * n + 2.0, 4.2), dpi=120, sharey=True, squeeze=False,
                             layout="constrained")
    for ax, (world, runs) in zip(axes[0], panels.items() or [("", [])]):
        for questioner, s in runs:
            x = np.arange(s["rounds"] + 1)
            lo, hi = (np.asarray(v) for v in s[f"hits@{k}_ci95"])
            ax.fill_between(x, lo, hi, color=colour[questioner], alpha=0.18, linewidth=0)
            ax.plot(x, s[f"hits@{k}"], marker="o", ms=3, color=colour[questioner], label=questioner)
        ax.set_title(world or "runs", fontsize=10)
        ax.set_xlabel("dialog round")
        ax.set_ylim(0, 100)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(f"Hits@{k} (%), cumulative")
    if questioners:
        handles = [plt.Line2D([], [], color=colour[q], marker="o", ms=3, label=q) for q in questioners]
        fig.legend(handles=handles, loc="outside right center", fontsize=8, title="questioner", title_fontsize=8)
    fig.suptitle(title or f"Hits@{k} per round (95% bootstrap bands over targets)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        atomic_write(path, lambda tmp: fig.savefig(tmp, format="png"))
    finally:
        plt.close(fig)


def _jsonable(value):
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)
