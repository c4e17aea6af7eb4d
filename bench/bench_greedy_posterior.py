"""The greedy information-gain questioner before and after weighting its candidates by a calibrated posterior.

On the learned Shapes world (the shipped dual encoder), ``weighting=uniform`` (every top-50 candidate alike)
against ``weighting=posterior`` (``softmax(score * logit_scale)``, the InfoNCE inverse temperature stored in
the weights), both in one ``chatir eval`` over the full benchmark; then the exact world's greedy (log-likelihood
posterior at scale 1), whose figures the change must leave as they were. Writes each setting's Hits@10 per
round with 95% bootstrap intervals, BRI and mean rank per round, with the commit, machine and command::

    nice -n 10 .venv/bin/python bench/bench_greedy_posterior.py --out bench/results/greedy_posterior.json

``--fit-temperature`` checks the stored scale instead: it plays the posterior greedy on TRAINING-split
targets (another seeded corpus of the same size as the benchmark's; no benchmark target is seen), collects
each round's top-50 candidate scores, and fits the inverse temperature that maximises the likelihood of
the target among the top 50 (where it is there), against the stored scale and uniform weights::

    nice -n 10 .venv/bin/python bench/bench_greedy_posterior.py --fit-temperature --out bench/results/greedy_posterior_fit.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "shapes": ["--world", "shapes",
               "--questioner", "greedy_info_gain", "--questioner-arg", "weighting=uniform",
               "--questioner", "greedy_info_gain", "--questioner-arg", "weighting=posterior"],
    "shapes_oracle": ["--world", "shapes_oracle", "--questioner", "greedy_info_gain"],
}


def chatir_eval(args: list[str], out: Path, num_targets: int | None) -> tuple[dict, str, float]:
    """Runs ``chatir eval`` in a subprocess; its results.json rows, the command, and its wall seconds."""
    cmd = [sys.executable, "-m", "chatir_env.cli", "eval", *args, "--out", str(out)]
    if num_targets:
        cmd += ["--num-targets", str(num_targets)]
    start = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=True)
    seconds = time.perf_counter() - start
    rows = json.loads((out / "results.json").read_text())["results"]
    shown = "chatir " + " ".join(shlex.quote(a) for a in cmd[3:] if not a.startswith(str(out)))
    return rows, shown.replace(" --out", ""), seconds


class _RecordingGreedy:
    """The posterior greedy questioner, keeping each round's top-k scores and the target's place among them."""

    def __init__(self, targets: list[str], **kwargs):
        from chatir_env.agents.greedy import GreedyInfoGainQuestioner

        self.inner = GreedyInfoGainQuestioner(**kwargs)
        self.targets = targets
        self.scores: list[np.ndarray] = []  # per round: [n, K]
        self.positions: list[np.ndarray] = []  # per round: [n], -1 where the target is not in the top K

    candidate_top_k = property(lambda self: self.inner.candidate_top_k)

    def bind_world(self, world) -> None:
        self.inner.bind_world(world)

    def reset(self, captions, pools=None) -> None:
        if len(captions) != len(self.targets):
            raise RuntimeError("the fit plays every target in one batch (at most 512)")
        self.inner.reset(captions, pools)

    def ask(self, observations):
        k = self.inner.top_k
        self.scores.append(np.stack([o["candidates"].scores[:k] for o in observations]).astype(np.float64))
        self.positions.append(np.array([list(o["candidates"].ids[:k]).index(t) if t in o["candidates"].ids[:k] else -1
                                        for o, t in zip(observations, self.targets)]))
        return self.inner.ask(observations)


def _mean_nll(scores: torch.Tensor, positions: torch.Tensor, scale: torch.Tensor | float) -> torch.Tensor:
    """Mean negative log-likelihood of the target's place under softmax(scale * scores)."""
    logp = torch.log_softmax(scores * scale, dim=1)
    return -logp.gather(1, positions[:, None]).mean()


def fit_temperature(num_targets: int, corpus_size: int, rounds: int) -> dict:
    from chatir_env.eval.runner import play_episodes
    from chatir_env.worlds import build_world

    world = build_world("shapes", split="train", corpus_size=corpus_size, num_targets=num_targets)
    questioner = _RecordingGreedy(list(world.targets))
    questioner.bind_world(world)
    play_episodes(world, questioner, max_rounds=rounds, batch_size=max(512, num_targets), progress=False)
    stored = float(world.retriever.logit_scale)
    scores = torch.from_numpy(np.concatenate(questioner.scores))
    positions = torch.from_numpy(np.concatenate(questioner.positions))
    rounds_of = torch.from_numpy(np.concatenate([np.full(len(p), r) for r, p in enumerate(questioner.positions)]))
    inside = positions >= 0
    scores, positions, rounds_of = scores[inside], positions[inside], rounds_of[inside]
    # The NLL is convex in the scale (log-sum-exp of a linear function, less a linear one): L-BFGS on its log.
    log_scale = torch.tensor(np.log(stored), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([log_scale], lr=1, max_iter=200, tolerance_grad=1e-10, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = _mean_nll(scores, positions, log_scale.exp())
        loss.backward()
        return loss

    opt.step(closure)
    fitted = float(log_scale.detach().exp())
    k = scores.shape[1]
    with torch.no_grad():
        per_round = {int(r): {"n": int((rounds_of == r).sum()),
                              "nll_stored": float(_mean_nll(scores[rounds_of == r], positions[rounds_of == r], stored)),
                              "nll_fitted": float(_mean_nll(scores[rounds_of == r], positions[rounds_of == r], fitted))}
                     for r in rounds_of.unique()}
        return {
            "split": "train", "corpus_size": corpus_size, "targets": num_targets, "rounds": rounds, "top_k": k,
            "dialog_questioner": "greedy_info_gain(weighting=posterior) at the stored scale",
            "pairs_target_in_top_k": int(inside.sum()), "pairs_total": int(len(inside)),
            "stored_logit_scale": stored, "stored_temperature": 1 / stored,
            "fitted_logit_scale": fitted, "fitted_temperature": 1 / fitted,
            "mean_nll_stored": float(_mean_nll(scores, positions, stored)),
            "mean_nll_fitted": float(_mean_nll(scores, positions, fitted)),
            "mean_nll_uniform": float(np.log(k)),
            "per_round": per_round,
        }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="bench/results/greedy_posterior.json")
    parser.add_argument("--num-targets", type=int, help="only the first n benchmark targets (a quick look; default all)")
    parser.add_argument("--fit-temperature", action="store_true", help="fit the softmax temperature on training-split dialogs")
    parser.add_argument("--fit-targets", type=int, default=512, help="training-split targets of the fit (at most 512)")
    parser.add_argument("--fit-corpus", type=int, default=50_000,
                        help="training-split corpus size (the benchmark's is 50,000)")
    args = parser.parse_args()

    if args.fit_temperature:
        report = {"fit": fit_temperature(args.fit_targets, corpus_size=args.fit_corpus, rounds=10)}
    else:
        report = {"runs": run_evals(args.num_targets)}
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=ROOT, capture_output=True,
                           text=True).stdout.strip()
    report = {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "commit": commit + ("+dirty" if dirty else ""),
        "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                    "cpus": os.cpu_count(), "niceness": os.nice(0)},
        "num_targets": (args.fit_targets if args.fit_temperature else args.num_targets) or "all",
        **report,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    if args.fit_temperature:
        fit = report["fit"]
        print(f"logit scale stored {fit['stored_logit_scale']:.2f} (NLL {fit['mean_nll_stored']:.3f}), fitted "
              f"{fit['fitted_logit_scale']:.2f} (NLL {fit['mean_nll_fitted']:.3f}), uniform NLL {fit['mean_nll_uniform']:.3f}")
    for name, r in report.get("runs", {}).items():
        hits, (lo, hi) = r["hits@10"], r["hits@10_ci95"]
        cells = "  ".join(f"R{i} {hits[i]:.1f} [{lo[i]:.1f}, {hi[i]:.1f}]" for i in (0, 1, 3, 5, 10) if i < len(hits))
        print(f"{name}: {cells}  BRI {r['bri']:.3f}  mean rank R10 {r['mean_rank'][-1]:.1f}")
    print(f"wrote {args.out}")
    return 0


def run_evals(num_targets: int | None) -> dict:
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for world, eval_args in RUNS.items():
            rows, command, seconds = chatir_eval(eval_args, Path(tmp) / world, num_targets)
            for name, s in rows.items():
                runs[name] = {
                    "eval_command": command, "eval_seconds": round(seconds, 1), "targets": s["queries"],
                    "hits@10": s["hits@10"], "hits@10_ci95": s["hits@10_ci95"], "bri": s["bri"], "bri_ci95": s.get("bri_ci95"),
                    "mean_rank": s["mean_rank"], "median_rank": s["median_rank"],
                    "repeated_question_rate": s.get("repeated_question_rate"),
                }
    return runs


if __name__ == "__main__":
    raise SystemExit(main())
