r"""The official offline ChatIR benchmark over recorded dialog files.

    chatir eval-dialogs --index runs/blip_50k --retriever blip --model DIR \
        --dialogs data/chatir/ChatGPT_BLIP2.json data/chatir/Human_BLIP2.json --out runs/eval_dialogs

For each file, every dialog is encoded at rounds 0..10 (round t: the caption and the first t turns,
joined by ", " exactly as ChatIR's eval.py joins them), each target is ranked against the index
(``metrics.target_ranks``: a stable-descending-sort rank computed without sorting), and the table
reports ChatIR's cumulative Hits@10 per round with a 95% bootstrap interval over targets, the
per-round (non-cumulative) Hits@10, mean rank, and BRI. Per file, ``<out>/<file stem>.json`` (summary
and the raw ranks) and ``<out>/<file stem>.csv`` are written atomically; ``<out>/summary.csv`` holds
one row per file and round.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import torch

from chatir_env.atomic import atomic_write
from chatir_env.dialog import Dialog
from chatir_env.index import ImageIndex, IndexMismatchError
from chatir_env.metrics import summarize

ROUNDS = 10


def evaluate_dialog_file(
    retriever: Any,
    index: ImageIndex,
    dialogs: Sequence[tuple[str, Dialog]],
    *,
    rounds: int = ROUNDS,
    batch_size: int = 256,
    progress: bool = False,
) -> torch.Tensor:
    """Ranks ``[rounds + 1, Q]`` (0-based) of each dialog's target after 0..rounds turns.

    ``dialogs`` is ``[(target id, Dialog)]`` (``load_dialog_file``); a target missing from the index
    and an index built by another model are errors. A dialog with fewer turns than ``rounds`` is
    ranked with all it has.
    """
    index.check_compatible(str(retriever.fingerprint))
    targets = index.positions([t for t, _ in dialogs])
    batches = [(t, start) for t in range(rounds + 1) for start in range(0, len(dialogs), batch_size)]
    if progress:
        from chatir_env.progress import progress as progress_bar

        batches = progress_bar(batches, desc="encoding dialogs", unit="batch")
    vectors = []
    with torch.no_grad():
        for t, start in batches:
            chunk = [d.truncated(t) for _, d in dialogs[start : start + batch_size]]
            encoded = retriever.encode_dialogs(chunk)
            broken = ~torch.isfinite(encoded).all(dim=1)
            if bool(broken.any()):
                target = dialogs[start + int(broken.nonzero()[0])][0]
                raise ValueError(f"the retriever returned NaN or inf for the dialog of target {target!r} at round {t}; "
                                 "the model produced invalid embeddings")
            vectors.append(encoded.to(index.embeddings.device))
        # One ranking call over every round: the score GEMM then runs on tiles of ~1,000 queries
        # (faster per query than one encoder batch at a time) and its buffers are allocated once.
        queries = torch.cat(vectors)
        if progress:
            print(f"ranking {len(queries):,} dialog vectors against {len(index):,} images", file=sys.stderr)
        ranks = index.ranks(queries, targets.repeat(rounds + 1))
    return ranks.view(rounds + 1, len(dialogs)).cpu()


def summary_rows(name: str, summary: dict, k: int = 10) -> list[dict]:
    lo, hi = summary[f"hits@{k}_ci95"]
    return [
        {
            "file": name,
            "round": t,
            f"hits@{k}": round(summary[f"hits@{k}"][t], 4),
            "ci95_low": round(lo[t], 4),
            "ci95_high": round(hi[t], 4),
            f"per_round_hits@{k}": round(summary[f"per_round_hits@{k}"][t], 4),
            "mean_rank": round(summary["mean_rank"][t], 2),
            "median_rank": summary["median_rank"][t],
        }
        for t in range(summary["rounds"] + 1)
    ]


def _csv_text(rows: list[dict]) -> str:
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
    writer.writeheader()
    writer.writerows(rows)
    return buf.getvalue()


def format_table(results: dict[str, dict], k: int = 10) -> str:
    """One row per file: Hits@k at each round, then BRI (with its 95% interval)."""
    names = list(results)
    rounds = max(r["rounds"] for r in results.values())
    width = max(12, *(len(n) for n in names))
    head = f"{'file':<{width}} " + " ".join(f"{t:>6}" for t in range(rounds + 1)) + "   BRI [95% CI]"
    lines = [f"Hits@{k} (cumulative, %) per round", head, "-" * len(head)]
    for name in names:
        s = results[name]
        hits = " ".join(f"{h:6.2f}" for h in s[f"hits@{k}"])
        bri = f"   {s['bri']:.3f} [{s['bri_ci95'][0]:.3f}, {s['bri_ci95'][1]:.3f}]" if "bri" in s else ""
        lines.append(f"{name:<{width}} {hits}{bri}")
        lo, hi = s[f"hits@{k}_ci95"]
        lines.append(f"{'  +- 95% CI':<{width}} " + " ".join(f"{(b - a) / 2:6.2f}" for a, b in zip(lo, hi)))
    return "\n".join(lines)


def write_results(out_dir: Path, name: str, summary: dict, ranks: torch.Tensor, k: int = 10) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"file": name, "summary": summary, "ranks": ranks.tolist()}
    atomic_write(out_dir / f"{Path(name).stem}.json", lambda tmp: Path(tmp).write_text(json.dumps(payload)))
    atomic_write(out_dir / f"{Path(name).stem}.csv",
                 lambda tmp: Path(tmp).write_text(_csv_text(summary_rows(name, summary, k))))


def configure(parser: argparse.ArgumentParser) -> None:
    from chatir_env.data.index_cli import add_retriever_arguments

    add_retriever_arguments(parser)
    parser.add_argument("--index", required=True, help="index built by `chatir index` with the same retriever")
    parser.add_argument("--dialogs", nargs="+", required=True, help="ChatIR dialog files (JSON lists of {img, dialog})")
    parser.add_argument("--out", required=True, help="folder for <file>.json, <file>.csv and summary.csv")
    parser.add_argument("--batch-size", type=int, default=256, help="dialogs encoded per call")
    parser.add_argument("--k", type=int, default=10, help="Hits@k (10 in the paper)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    parser.add_argument("--no-progress", action="store_true")


def run(args: argparse.Namespace) -> int:
    from chatir_env.data.chatir_files import DialogFileError, load_dialog_file
    from chatir_env.data.index_cli import retriever_from_args

    out_dir = Path(args.out)
    try:
        retriever = retriever_from_args(args)
        index = ImageIndex.load(args.index, device=getattr(retriever, "device", "cpu"), fingerprint=str(retriever.fingerprint))
        corpus = set(index.ids)
        results: dict[str, dict] = {}
        all_rows: list[dict] = []
        for path in args.dialogs:
            dialogs = load_dialog_file(path, corpus=corpus)
            name = Path(path).name
            print(f"{name}: {len(dialogs)} dialogs", file=sys.stderr)
            ranks = evaluate_dialog_file(retriever, index, dialogs, batch_size=args.batch_size, progress=not args.no_progress)
            summary = summarize(ranks, args.k, bootstrap_samples=args.bootstrap)
            write_results(out_dir, name, summary, ranks, args.k)
            results[name] = summary
            all_rows.extend(summary_rows(name, summary, args.k))
    except (DialogFileError, FileNotFoundError, IndexMismatchError, ValueError, KeyError) as err:
        print(f"chatir eval-dialogs: {err}", file=sys.stderr)
        return 1
    atomic_write(out_dir / "summary.csv", lambda tmp: Path(tmp).write_text(_csv_text(all_rows)))
    print(format_table(results, args.k))
    print(f"results in {out_dir}")
    return 0
