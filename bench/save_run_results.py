r"""Copies a finished training run's evaluation into bench/results/, with its config and the command that made it.

A training command writes its figures to its run folder (``results.json``, ``validation.json``,
``curve.json``), which is not committed; this keeps them next to the other quoted figures::

    .venv/bin/python bench/save_run_results.py runs/grpo_shapes_10 --out grpo_shapes_10
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from _results import save

KEEP = ("results.json", "validation.json", "curve.json", "history.json")
# Training scalars kept from the run's TensorBoard logs, where it has them (GRPO runs).
SCALARS = ("train/rewards/episode_return/mean", "train/rewards/hit_at_10/mean", "train/rewards/repeated_turns/mean")


def tensorboard_scalars(run: Path) -> dict[str, list[list[float]]]:
    """``{tag: [[step, value], ...]}`` for the SCALARS the run's ``tb/`` logs hold."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out: dict[str, list[list[float]]] = {}
    for events in sorted((run / "tb").glob("**/events.out.tfevents.*")):
        accumulator = EventAccumulator(str(events))
        accumulator.Reload()
        for tag in set(SCALARS) & set(accumulator.Tags()["scalars"]):
            out.setdefault(tag, []).extend([e.step, e.value] for e in accumulator.Scalars(tag))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", type=Path, help="the run folder")
    parser.add_argument("--out", required=True, metavar="NAME", help="bench/results/NAME.json")
    parser.add_argument("--command", help="the command that made the run, where its folder does not record it "
                                          "(a run stopped before its final evaluation)")
    args = parser.parse_args()
    found = {name: json.loads((args.run / name).read_text()) for name in KEEP if (args.run / name).exists()}
    if (args.run / "tb").is_dir():
        found["training_scalars"] = tensorboard_scalars(args.run)
    if not found:
        raise SystemExit(f"{args.run}: none of {', '.join(KEEP)} found")
    results = found.get("results.json", {})
    for row in results.get("results", {}).values():
        row.pop("example_dialogs", None)  # dialogs of benchmark targets: kept in the run folder only
    command = args.command or results.get("config", {}).get("command")
    if not command:
        raise SystemExit(f"{args.run} does not record its command: pass --command")
    save(args.out, {"run": args.run.name, **{name.removesuffix(".json"): value for name, value in found.items()}},
         command=command)


if __name__ == "__main__":
    main()
