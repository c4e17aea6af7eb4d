"""Ranking speed of the offline benchmark: `chatir eval-dialogs` vs ChatIR eval.py's argsort loop.

Same embeddings for both: a 50,000 x 256 random unit-vector index and 2,064 targets x 11 rounds of
query vectors (each a noisy copy of its target's vector, less noisy every round, so Hits@10 is
neither 0 nor 100). The argsort path does what eval.py's ``_get_recalls`` does per batch of 500
queries: score against the corpus (``torch.mm``), ``argsort`` descending, find the target's
position. The package path is ``evaluate_dialog_file``, the function behind `chatir eval-dialogs`,
given a retriever that looks the precomputed vectors up (so no encoder time is in either figure):
it ranks every round in one ``ImageIndex.ranks`` call (``metrics.target_ranks``: tiled GEMM and
counting, no sort). The script checks that both give identical per-round Hits@10, then prints the
times and their ratio.

    .venv/bin/python bench/bench_eval_dialogs.py            # CPU, ~2 minutes on 2 cores
    .venv/bin/python bench/bench_eval_dialogs.py --device cuda
"""

from __future__ import annotations

import argparse
import time

import torch
from _results import save
from _source_tree import use_source_tree

use_source_tree()

from chatir_env import cpu_matmul  # noqa: E402
from chatir_env.dialog import Dialog  # noqa: E402
from chatir_env.eval.eval_dialogs import evaluate_dialog_file  # noqa: E402
from chatir_env.index import ImageIndex  # noqa: E402
from chatir_env.metrics import hits_at_k  # noqa: E402


def eval_data(corpus_size: int, dim: int, num_targets: int, rounds: int, seed: int):
    """A unit-vector corpus, random targets, and per round a noisy query per target.

    Each query is a noisy copy of its target's vector, less noisy every round (so Hits@10 is neither 0 nor 100).
    """
    g = torch.Generator().manual_seed(seed)
    corpus = torch.nn.functional.normalize(torch.randn(corpus_size, dim, generator=g), dim=1)
    targets = torch.randperm(corpus_size, generator=g)[:num_targets]
    queries = []
    for t in range(rounds + 1):
        signal = 0.10 + 0.02 * t  # the dialog says a little more about the target each round
        noise = torch.randn(num_targets, dim, generator=g) / dim**0.5
        queries.append(torch.nn.functional.normalize(signal * corpus[targets] + noise, dim=1))
    return corpus, targets, queries


class LookupRetriever:
    """Returns the precomputed vector of (dialog caption, round): the encoder is not what is timed."""

    fingerprint = "bench-lookup"

    def __init__(self, vectors: list[torch.Tensor]):
        self.vectors = vectors  # [round] -> [targets, d]

    def encode_dialogs(self, dialogs: list[Dialog]) -> torch.Tensor:
        rows = torch.tensor([int(d.caption) for d in dialogs])
        return self.vectors[dialogs[0].round][rows]


def argsort_ranks(queries: torch.Tensor, corpus: torch.Tensor, targets: torch.Tensor, batch: int = 500) -> torch.Tensor:
    """ChatIR eval.py's recall computation (``_get_recalls``), batch by batch."""
    out = []
    for start in range(0, queries.shape[0], batch):
        target_ids = targets[start : start + batch].unsqueeze(1)
        scores = queries[start : start + batch] @ corpus.T
        arg_ranks = torch.argsort(scores, descending=True, dim=1).long()
        out.append(((arg_ranks - target_ids) == 0).nonzero()[:, 1])
    return torch.cat(out)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=256)
    parser.add_argument("--targets", type=int, default=2_064)
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    corpus, targets, queries = eval_data(args.corpus, args.dim, args.targets, args.rounds, args.seed)
    corpus, targets = corpus.to(device), targets.to(device)
    queries = [q.to(device) for q in queries]
    print(f"device {device}, torch threads {torch.get_num_threads()}: corpus {args.corpus} x {args.dim}, "
          f"{args.targets} targets x {args.rounds + 1} rounds")

    index = ImageIndex(corpus, [str(i) for i in range(args.corpus)], LookupRetriever.fingerprint)
    retriever = LookupRetriever(queries)
    # Each dialog's caption is its row number; every turn adds one round.
    dialogs = [(str(int(t)), Dialog(str(i), tuple(("q", "a") for _ in range(args.rounds))))
               for i, t in enumerate(targets.tolist())]
    print("package GEMM:", "numpy OpenBLAS, one thread per worker" if cpu_matmul.uses_openblas(queries[0], corpus.T)
          else "torch.mm")

    # Warm up both paths once (allocator, kernels, thread pools), untimed.
    evaluate_dialog_file(retriever, index, dialogs[:64], rounds=1)
    argsort_ranks(queries[0][:64], corpus, targets[:64])

    _sync(device)
    start = time.perf_counter()
    package = evaluate_dialog_file(retriever, index, dialogs, rounds=args.rounds)
    _sync(device)
    package_s = time.perf_counter() - start

    start = time.perf_counter()
    official = torch.stack([argsort_ranks(q, corpus, targets) for q in queries]).cpu()
    _sync(device)
    argsort_s = time.perf_counter() - start

    hits_package, hits_official = hits_at_k(package.cpu()), hits_at_k(official.cpu())
    assert (hits_package == hits_official).all(), (hits_package, hits_official)
    same = (package == official).double().mean().item() * 100
    print("Hits@10 per round:", " ".join(f"{h:.2f}" for h in hits_package), "(identical for both paths)")
    print(f"ranks identical for {same:.3f}% of (round, target) pairs")
    print(f"package eval-dialogs: {package_s:8.2f} s")
    print(f"argsort (eval.py):    {argsort_s:8.2f} s")
    print(f"speed ratio (argsort / package): {argsort_s / package_s:.1f}x")
    save("eval_dialogs" if str(device) == "cpu" else f"eval_dialogs_{str(device).split(':')[0]}",
         {"device": str(device), "corpus": args.corpus, "dim": args.dim, "rounds": args.rounds,
          "package_seconds": round(package_s, 3), "argsort_seconds": round(argsort_s, 3),
          "ratio": round(argsort_s / package_s, 2), "ranks_identical_percent": same, "hits@10": hits_package.tolist()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
