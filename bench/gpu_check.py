"""One short device check of the CUDA paths: retrievers, BLIP2 answerer, ranking, env steps.

Needs only torch, transformers (and what ``chatir_env`` imports) with this repository as the
working directory: no hub, no downloads, no trained weights. Every model is a tiny random one built
from a config (``chatir_env.testing``), so the throughputs measure the package's batching and
device plumbing (preprocessing, transfers, kernel launches), not a real BLIP/CLIP/BLIP2's FLOPs.

Sections (each one runs even if another fails; its error is recorded):

1. ``retrievers``: BlipDialogRetriever and ClipRetriever at float32 and float16: parameters and
   features on the requested device, features float32 and unit norm, float16 vs float32 max abs
   difference, per-row cosine, text->image top-1 agreement; encode throughput.
2. ``blip2``: Blip2Answerer (tiny OPT language model) at float16: answers of one batch == answers
   one at a time (and in float32, to tell rounding flips from batching bugs); first-token logits
   batched vs single; answers/s at batch 1 vs batch 32.
3. ``index``: a 50,000 x 256 random unit index, 2,064 targets x 11 rounds of noisy queries (as
   bench/bench_eval_dialogs.py): ``metrics.target_ranks`` vs ChatIR eval.py's argsort loop on the
   device (identical Hits@10, time ratio), ``ImageIndex`` on the device, and ``target_ranks`` on the
   CPU for the same data (GPU/CPU time ratio).
4. ``env``: ChatIRVectorEnv (Shapes world, random dual-encoder weights) stepped on the device
   (and on the CPU for a ratio when the device is not the CPU): env steps/s.

Key suffixes give the unit of every figure (see ``units`` in the JSON). Exit status 0 when every
check passed, 1 otherwise.

    python3 bench/gpu_check.py --out $OUT                         # CUDA, full sizes, < 5 min on an H100
    .venv/bin/python bench/gpu_check.py --device cpu --quick --out /tmp/gpu_check   # smoke test, ~10 s

The lent GPU machines have torch and transformers but no gymnasium (which ``chatir_env`` imports).
Both it and its one dependency missing there are pure Python: carry them out of this repo's .venv
(ignored paths travel when named) and put that folder on PYTHONPATH; the machine's python3 keeps
its own CUDA torch (do not carry the .venv's CPU torch)::

    carry: [".venv/lib/python3.11/site-packages/gymnasium",
            ".venv/lib/python3.11/site-packages/farama_notifications"]
    command: PYTHONUNBUFFERED=1 PYTHONPATH=.venv/lib/python3.11/site-packages python3 bench/gpu_check.py --out $OUT
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT / "bench") not in sys.path:  # bench/ is not a package: its modules are found by path
    sys.path.insert(0, str(ROOT / "bench"))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from _source_tree import use_source_tree  # noqa: E402

use_source_tree()

UNITS = {
    "_s": "seconds (wall clock, after torch.cuda.synchronize on CUDA)",
    "_per_s": "items per second (named before the suffix)",
    "_pct": "percent",
    "_mib": "MiB (2**20 bytes)",
    "_x": "ratio (dimensionless)",
    "max_abs_diff": "absolute difference of float32 feature/logit values",
    "cosine": "cosine similarity (dimensionless)",
    "norm": "L2 norm deviation from 1 (dimensionless)",
}

FULL = dict(
    retriever_items=256, blip2_answers=64, blip2_batch=32,
    corpus=50_000, dim=256, targets=2_064, rounds=10, gpu_repeats=5,
    env_corpus=50_000, env_targets=2_064, num_envs=64, env_episodes=2,
)
QUICK = dict(
    retriever_items=8, blip2_answers=8, blip2_batch=8,
    corpus=5_000, dim=64, targets=200, rounds=2, gpu_repeats=1,
    env_corpus=500, env_targets=100, num_envs=8, env_episodes=1,
)


# --------------------------------------------------------------------------- helpers
def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", flush=True)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device, repeats: int = 1):
    """(last result, median seconds over ``repeats`` runs), synchronised on CUDA."""
    times, result = [], None
    for _ in range(max(1, repeats)):
        sync(device)
        start = time.perf_counter()
        result = fn()
        sync(device)
        times.append(time.perf_counter() - start)
    return result, statistics.median(times)


class Checks:
    def __init__(self) -> None:
        self.items: list[dict] = []

    def add(self, name: str, ok: bool, detail: str = "") -> bool:
        self.items.append({"name": name, "ok": bool(ok), "detail": detail})
        log(f"  check {'PASS' if ok else 'FAIL'}: {name}" + (f" ({detail})" if detail else ""))
        return bool(ok)


@contextlib.contextmanager
def quiet_half_on_cpu():
    """resolve_dtype warns (and uses float32) when float16 is asked for on the CPU."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*requested on CPU; using float32")
        yield


def random_dialogs(n: int, seed: int):
    """``n`` dialogs of random words (0 to 10 turns): texts from a few to a few hundred tokens."""
    from chatir_env.dialog import Dialog
    from chatir_env.testing import WORDS

    rng = np.random.default_rng(seed)

    def words(lo, hi):
        return " ".join(rng.choice(WORDS, size=int(rng.integers(lo, hi))))

    return [
        Dialog(words(3, 10), tuple((words(2, 8) + "?", words(1, 3)) for _ in range(int(rng.integers(0, 11)))))
        for _ in range(n)
    ]


# --------------------------------------------------------------------------- 1. retrievers
def check_retrievers(device: torch.device, sizes: dict, checks: Checks, seed: int) -> dict:
    from chatir_env.retrievers.blip import BlipDialogRetriever
    from chatir_env.retrievers.clip import ClipRetriever
    from chatir_env.testing import bert_tokenizer, clip_tokenizer, noise_images, tiny_blip, tiny_clip

    n = sizes["retriever_items"]
    images = noise_images(n, seed=seed, sizes=((40, 30), (32, 32), (50, 64), (224, 160)))
    dialogs = random_dialogs(n, seed)
    bert, clip_tok = bert_tokenizer(), clip_tokenizer()
    makers = {
        "blip": lambda dtype: BlipDialogRetriever(tiny_blip(seed=seed), bert, device=device, dtype=dtype, batch_size=64),
        "clip": lambda dtype: ClipRetriever(tiny_clip(clip_tok, seed=seed), clip_tok, device=device, dtype=dtype,
                                            batch_size=64),
    }
    out: dict = {"items": n}
    for name, make in makers.items():
        log(f"retrievers: {name} ({n} images, {n} dialogs)")
        section: dict = {}
        feats = {}
        for dtype in ("float32", "float16"):
            with quiet_half_on_cpu():
                retriever = make(dtype)
            param = next(retriever.model.parameters())
            retriever.encode_images(images[:2])  # warm-up (kernels, allocator)
            retriever.encode_dialogs(dialogs[:2])
            img, img_s = timed(functools.partial(retriever.encode_images, images), device)
            txt, txt_s = timed(functools.partial(retriever.encode_dialogs, dialogs), device)
            feats[dtype] = (img, txt)
            section[dtype] = {
                "dtype_effective": str(retriever.dtype).removeprefix("torch."),
                "param_device": str(param.device),
                "param_dtype": str(param.dtype).removeprefix("torch."),
                "feature_device": str(img.device),
                "feature_dtype": str(img.dtype).removeprefix("torch."),
                "feature_dim": int(img.shape[1]),
                "image_norm_max_dev": float((img.norm(dim=-1) - 1).abs().max()),
                "text_norm_max_dev": float((txt.norm(dim=-1) - 1).abs().max()),
                "encode_images_per_s": n / img_s,
                "encode_dialogs_per_s": n / txt_s,
            }
            s = section[dtype]
            checks.add(f"{name}/{dtype}: parameters and features on {device.type}",
                       param.device.type == device.type and img.device.type == device.type and txt.device.type == device.type,
                       f"params {s['param_device']}, features {s['feature_device']}")
            want_dtype = "float16" if (dtype == "float16" and device.type != "cpu") else "float32"
            checks.add(f"{name}/{dtype}: model runs in {want_dtype}, features float32",
                       s["param_dtype"] == want_dtype and s["feature_dtype"] == "float32",
                       f"params {s['param_dtype']}, features {s['feature_dtype']}")
            checks.add(f"{name}/{dtype}: unit-norm features",
                       max(s["image_norm_max_dev"], s["text_norm_max_dev"]) < 1e-4,
                       f"max |norm - 1| = {max(s['image_norm_max_dev'], s['text_norm_max_dev']):.2e}")
            del retriever
        (img32, txt32), (img16, txt16) = feats["float32"], feats["float16"]
        cos_img, cos_txt = F.cosine_similarity(img16, img32, dim=-1), F.cosine_similarity(txt16, txt32, dim=-1)
        top32, top16 = (txt32 @ img32.T).argmax(dim=1), (txt16 @ img16.T).argmax(dim=1)
        section["fp16_vs_fp32"] = {
            "image_max_abs_diff": float((img16 - img32).abs().max()),
            "text_max_abs_diff": float((txt16 - txt32).abs().max()),
            "image_cosine_min": float(cos_img.min()),
            "image_cosine_mean": float(cos_img.mean()),
            "text_cosine_min": float(cos_txt.min()),
            "text_cosine_mean": float(cos_txt.mean()),
            "text_to_image_top1_agreement_pct": float((top16 == top32).double().mean() * 100),
        }
        agree = section["fp16_vs_fp32"]
        checks.add(f"{name}: float16 features agree with float32 (cosine > 0.99)",
                   min(agree["image_cosine_min"], agree["text_cosine_min"]) > 0.99,
                   f"min cosine image {agree['image_cosine_min']:.5f}, text {agree['text_cosine_min']:.5f}; "
                   f"max abs diff {max(agree['image_max_abs_diff'], agree['text_max_abs_diff']):.2e}")
        out[name] = section
    return out


# --------------------------------------------------------------------------- 2. BLIP2
def check_blip2(device: torch.device, sizes: dict, checks: Checks, seed: int) -> dict:
    from chatir_env.answerers.blip2 import Blip2Answerer
    from chatir_env.testing import WORDS, noise_images, tiny_blip2

    n, batch = sizes["blip2_answers"], sizes["blip2_batch"]
    model, processor = tiny_blip2("opt", seed=seed)
    pictures = {f"img{i}.jpg": im for i, im in enumerate(noise_images(n, seed=seed + 1))}
    targets = list(pictures)
    rng = np.random.default_rng(seed)
    questions = [" ".join(rng.choice(WORDS, size=int(rng.integers(2, 15)))) + "?" for _ in range(n)]
    with quiet_half_on_cpu():
        answerer = Blip2Answerer(model, processor, pictures.__getitem__, device=device, dtype="float16", batch_size=batch)
    param = next(answerer.model.parameters())
    log(f"blip2: tiny OPT, {n} questions, dtype {answerer.dtype}, batch {batch} vs 1")

    answerer.batch_size = batch
    answerer.answer(targets[:batch], None, questions[:batch])  # warm-up
    batched, batched_s = timed(lambda: answerer.answer(targets, None, questions), device)
    answerer.batch_size = 1
    answerer.answer(targets[:1], None, questions[:1])
    single, single_s = timed(lambda: answerer.answer(targets, None, questions), device)
    answerer.batch_size = batch
    mismatches = [i for i, (a, b) in enumerate(zip(batched, single)) if a != b]

    k = min(n, batch)
    logits_b = answerer.next_token_logits(targets[:k], None, questions[:k])
    logits_s = torch.cat([answerer.next_token_logits([t], None, [q]) for t, q in zip(targets[:k], questions[:k])])
    same_argmax = (logits_b.argmax(dim=1) == logits_s.argmax(dim=1)).double().mean() * 100

    out = {
        "answers": n,
        "batch_size": batch,
        "dtype_effective": str(answerer.dtype).removeprefix("torch."),
        "param_device": str(param.device),
        "batched_equals_single_pct": 100.0 * (n - len(mismatches)) / n,
        "mismatches": [{"question": questions[i], "batched": batched[i], "single": single[i]} for i in mismatches[:5]],
        "distinct_answers": len(set(batched)),
        "first_token_logits_batched_vs_single_max_abs_diff": float((logits_b - logits_s).abs().max()),
        "first_token_argmax_agreement_pct": float(same_argmax),
        "batch1_answers_per_s": n / single_s,
        f"batch{batch}_answers_per_s": n / batched_s,
        "batch1_s": single_s,
        f"batch{batch}_s": batched_s,
        "speedup_batched_over_batch1_x": single_s / batched_s,
        "example_answers": batched[:3],
    }
    checks.add(f"blip2: parameters on {device.type}", param.device.type == device.type, out["param_device"])
    checks.add(f"blip2/{out['dtype_effective']}: batch-{batch} answers == one-by-one answers", not mismatches,
               f"{len(mismatches)} of {n} differ; first-token logits max abs diff "
               f"{out['first_token_logits_batched_vs_single_max_abs_diff']:.2e}"
               + (f", e.g. {out['mismatches'][0]}" if mismatches else ""))
    if answerer.dtype != torch.float32:
        # The same model in float32 on the same device: tells a float16 rounding flip from a batching bug.
        del answerer
        model32, processor32 = tiny_blip2("opt", seed=seed)
        answerer32 = Blip2Answerer(model32, processor32, pictures.__getitem__, device=device, dtype="float32",
                                   batch_size=batch)
        batched32 = answerer32.answer(targets, None, questions)
        answerer32.batch_size = 1
        single32 = answerer32.answer(targets, None, questions)
        out["float32_batched_equals_single_pct"] = 100.0 * sum(a == b for a, b in zip(batched32, single32)) / n
        out["float16_vs_float32_answers_agree_pct"] = 100.0 * sum(a == b for a, b in zip(batched, batched32)) / n
        checks.add(f"blip2/float32: batch-{batch} answers == one-by-one answers", batched32 == single32,
                   f"{out['float32_batched_equals_single_pct']:.1f}% equal")
    log(f"  answers/s: batch 1 {out['batch1_answers_per_s']:.1f}, batch {batch} {out[f'batch{batch}_answers_per_s']:.1f} "
        f"({out['speedup_batched_over_batch1_x']:.1f}x)")
    return out


# --------------------------------------------------------------------------- 3. index / ranking
def differences_are_near_ties(ranks_a, ranks_b, queries, corpus, targets) -> tuple[int, bool]:
    """(#differing (round, target) pairs, whether each is explained by float32 rounding).

    Two float32 GEMMs of the same data may round a score differently (another kernel, split-K): a
    rank may then move by the number of items whose exact (float64) score lies within a few float32
    ulps of the target's. Anything larger is a bug.
    """
    differing = torch.nonzero(ranks_a.cpu() != ranks_b.cpu()).tolist()
    corpus64 = corpus.detach().cpu().double()
    for r, i in differing:
        scores = corpus64 @ queries[r][i].detach().cpu().double()
        target_score = scores[int(targets[i])]
        near = int(((scores - target_score).abs() <= 8 * torch.finfo(torch.float32).eps).sum()) - 1
        if abs(int(ranks_a[r, i]) - int(ranks_b[r, i])) > near:
            return len(differing), False
    return len(differing), True


def check_index(device: torch.device, sizes: dict, checks: Checks, seed: int) -> dict:
    from bench_eval_dialogs import argsort_ranks, eval_data

    from chatir_env.index import ImageIndex
    from chatir_env.metrics import hits_at_k, target_ranks
    n, d, q, rounds, repeats = sizes["corpus"], sizes["dim"], sizes["targets"], sizes["rounds"], sizes["gpu_repeats"]
    log(f"index: corpus {n} x {d}, {q} targets x {rounds + 1} rounds on {device}")
    corpus_cpu, targets_cpu, queries_cpu = eval_data(n, d, q, rounds, seed)
    corpus, targets = corpus_cpu.to(device), targets_cpu.to(device)
    queries = [x.to(device) for x in queries_cpu]

    target_ranks(queries[0][:64], corpus, targets[:64])  # warm-up
    argsort_ranks(queries[0][:64], corpus, targets[:64])
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        base = torch.cuda.memory_allocated(device)
    package, package_s = timed(lambda: torch.stack([target_ranks(x, corpus, targets) for x in queries]), device, repeats)
    peak_mib = (torch.cuda.max_memory_allocated(device) - base) / 2**20 if device.type == "cuda" else None
    official, argsort_s = timed(lambda: torch.stack([argsort_ranks(x, corpus, targets) for x in queries]), device, repeats)

    hits_pkg, hits_off = hits_at_k(package.cpu()), hits_at_k(official.cpu())
    index = ImageIndex(corpus, [str(i) for i in range(n)], "random")
    via_index = torch.stack([index.ranks(x, targets) for x in queries])
    small_ranks, (top_scores, top_pos) = index.ranks_and_top_k(queries[-1][:64], targets[:64], 10)

    out = {
        "device": str(device),
        "corpus": n, "dim": d, "targets": q, "rounds": rounds + 1,
        "repeats": repeats,
        "hits@10_pct": hits_pkg.tolist(),
        "hits@10_identical": bool((hits_pkg == hits_off).all()),
        "ranks_identical_pct": float((package == official).double().mean() * 100),
        "target_ranks_s": package_s,
        "argsort_loop_s": argsort_s,
        "argsort_over_target_ranks_x": argsort_s / package_s,
        "target_ranks_queries_per_s": q * (rounds + 1) / package_s,
        "target_ranks_extra_peak_mem_mib": peak_mib,
        "image_index_ranks_identical_pct": float((via_index == package).double().mean() * 100),
        "image_index_result_device": str(via_index.device),
        "tf32_matmul": bool(torch.backends.cuda.matmul.allow_tf32) if device.type == "cuda" else None,
    }
    checks.add("index: target_ranks Hits@10 == argsort loop Hits@10 (every round)", out["hits@10_identical"],
               f"ranks identical for {out['ranks_identical_pct']:.3f}% of (round, target)")
    checks.add(f"index: ranks and ImageIndex results on {device.type}",
               package.device.type == device.type and via_index.device.type == device.type
               and small_ranks.device.type == device.type and top_pos.device.type == device.type,
               f"target_ranks {package.device}, ImageIndex {via_index.device}, top-k {top_pos.device}")
    differing, near_ties = differences_are_near_ties(via_index, package, queries, corpus, targets)
    out["image_index_ranks_differing_pairs"] = differing
    checks.add("index: ImageIndex.ranks == target_ranks (up to float32 near-ties)", near_ties,
               f"{out['image_index_ranks_identical_pct']:.5f}% identical; {differing} pairs differ, "
               f"{'all' if near_ties else 'not all'} within 8 float32 ulps of another item's score")
    log(f"  target_ranks {package_s:.3f} s, argsort loop {argsort_s:.3f} s ({out['argsort_over_target_ranks_x']:.1f}x)")

    # The same data on the CPU (one run: the slow side).
    log(f"index: target_ranks on cpu ({torch.get_num_threads()} threads), same data")
    target_ranks(queries_cpu[0][:64], corpus_cpu, targets_cpu[:64])
    cpu_ranks, cpu_s = timed(lambda: torch.stack([target_ranks(x, corpus_cpu, targets_cpu) for x in queries_cpu]),
                             torch.device("cpu"))
    hits_cpu = hits_at_k(cpu_ranks)
    out.update({
        "cpu_threads": torch.get_num_threads(),
        "cpu_target_ranks_s": cpu_s,
        "cpu_over_device_target_ranks_x": cpu_s / package_s,
        "cpu_vs_device_ranks_identical_pct": float((cpu_ranks == package.cpu()).double().mean() * 100),
        "cpu_vs_device_hits@10_identical": bool((hits_cpu == hits_pkg).all()),
        "cpu_vs_device_hits@10_max_abs_diff_pct": float(np.abs(hits_cpu - hits_pkg).max()),
    })
    log(f"  cpu target_ranks {cpu_s:.3f} s: cpu/{device.type} = {out['cpu_over_device_target_ranks_x']:.1f}x; "
        f"cpu vs {device.type} ranks identical {out['cpu_vs_device_ranks_identical_pct']:.3f}%")
    return out


# --------------------------------------------------------------------------- 4. env steps
def _env_steps_per_s(device: torch.device, sizes: dict, weights: str) -> dict:
    from chatir_env.vector_env import ChatIRVectorEnv
    from chatir_env.worlds.shapes_language import POOL_TEXTS

    num_envs, episodes = sizes["num_envs"], sizes["env_episodes"]
    start = time.perf_counter()
    env = ChatIRVectorEnv(num_envs=num_envs, world="shapes", device=str(device), weights=weights,
                          corpus_size=sizes["env_corpus"], num_targets=sizes["env_targets"])
    build_s = time.perf_counter() - start
    env.reset(seed=0)
    env.step([POOL_TEXTS[i % len(POOL_TEXTS)] for i in range(num_envs)])  # warm-up
    env.reset(seed=1)
    rounds = env.max_rounds

    def play():
        rewards = 0.0
        for _ in range(episodes):
            for r in range(rounds):
                _, rew, _, _, _ = env.step([POOL_TEXTS[(i * 7 + r * 13) % len(POOL_TEXTS)] for i in range(num_envs)])
                rewards += float(rew.sum())
        return rewards

    _, play_s = timed(play, device)
    steps = episodes * rounds * num_envs
    return {
        "index_device": str(env.world.index.embeddings.device),
        "world_build_s": build_s,
        "env_steps": steps,
        "play_s": play_s,
        "env_steps_per_s": steps / play_s,
    }


def check_env(device: torch.device, sizes: dict, checks: Checks, seed: int) -> dict:
    from safetensors.torch import save_file

    from chatir_env.worlds.shapes_retrievers import ShapesDualEncoder

    old_cache = os.environ.get("CHATIR_CACHE")
    with tempfile.TemporaryDirectory(prefix="chatir_gpu_check_") as tmp:
        os.environ["CHATIR_CACHE"] = str(Path(tmp) / "cache")  # no writes to the user's cache
        try:
            torch.manual_seed(seed)
            model = ShapesDualEncoder(dim=32, cnn_width=8, text_width=32)
            weights = Path(tmp) / "random_dual.safetensors"
            save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
            weights.with_suffix(".json").write_text(json.dumps({"model": model.config}))
            out = {"world": "shapes (random dual-encoder weights)", "num_envs": sizes["num_envs"],
                   "corpus": sizes["env_corpus"], "episodes": sizes["env_episodes"]}
            log(f"env: ChatIRVectorEnv x{sizes['num_envs']} on {device}, corpus {sizes['env_corpus']}")
            out[device.type] = _env_steps_per_s(device, sizes, str(weights))
            checks.add(f"env: index on {device.type}", out[device.type]["index_device"].startswith(device.type),
                       out[device.type]["index_device"])
            env_figures = out[device.type]
            log(f"  {env_figures['env_steps_per_s']:.0f} env steps/s (world built in {env_figures['world_build_s']:.1f} s)")
            if device.type != "cpu":
                log(f"env: the same on cpu ({torch.get_num_threads()} threads)")
                out["cpu"] = _env_steps_per_s(torch.device("cpu"), sizes, str(weights))
                out["device_over_cpu_steps_per_s_x"] = out[device.type]["env_steps_per_s"] / out["cpu"]["env_steps_per_s"]
                log(f"  {out['cpu']['env_steps_per_s']:.0f} env steps/s on cpu: "
                    f"{device.type}/cpu = {out['device_over_cpu_steps_per_s_x']:.2f}x")
        finally:
            if old_cache is None:
                os.environ.pop("CHATIR_CACHE", None)
            else:
                os.environ["CHATIR_CACHE"] = old_cache
    return out


# --------------------------------------------------------------------------- main
SECTIONS = {"retrievers": check_retrievers, "blip2": check_blip2, "index": check_index, "env": check_env}


def environment(device: torch.device) -> dict:
    import transformers

    info = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update({
            "gpu_name": props.name,
            "gpu_capability": f"{props.major}.{props.minor}",
            "gpu_total_mem_mib": props.total_memory / 2**20,
            "cuda": torch.version.cuda,
            "cudnn": torch.backends.cudnn.version(),
        })
    return info


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda (default when available), cuda:N or cpu")
    parser.add_argument("--out", default=".", help="a directory (gets gpu_check.json) or a .json path")
    parser.add_argument("--quick", action="store_true", help="small sizes (a CPU smoke test)")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch CPU threads (default: 1 with --device cpu, torch's default otherwise)")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=list(SECTIONS), help="sections to run")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        print("CUDA requested but torch.cuda.is_available() is False", file=sys.stderr)
        return 2
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    elif device.type == "cpu":
        torch.set_num_threads(1)
    out_path = Path(args.out)
    if out_path.suffix != ".json":
        out_path = out_path / "gpu_check.json"
    out_path.parent.mkdir(parents=True, exist_ok=True)

    sizes = QUICK if args.quick else FULL
    checks = Checks()
    report: dict = {"units": UNITS, "quick": args.quick, "sizes": sizes, "environment": environment(device)}
    try:
        import chatir_env  # noqa: F401  (needs gymnasium, safetensors, pillow, numpy beside torch/transformers)
    except ImportError as err:
        hint = (f"cannot import chatir_env ({err}); a machine without gymnasium can take it from this repo's "
                ".venv: carry .venv/lib/python3.11/site-packages/{gymnasium,farama_notifications} and set "
                "PYTHONPATH=.venv/lib/python3.11/site-packages (see the module docstring)")
        log(hint)
        report.update({"errors": {"import": hint}, "checks": [], "all_ok": False})
        out_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        return 2
    log(f"device {device} ({report['environment'].get('gpu_name', 'cpu')}), torch {torch.__version__}, "
        f"{torch.get_num_threads()} CPU threads, {'quick' if args.quick else 'full'} sizes")
    started = time.perf_counter()
    errors = {}
    for name in args.only:
        t0 = time.perf_counter()
        try:
            report[name] = SECTIONS[name](device, sizes, checks, args.seed)
        except Exception as err:  # record and go on: one broken path should not hide the others
            errors[name] = "".join(traceback.format_exception(err))
            report[name] = {"error": f"{type(err).__name__}: {err}"}
            log(f"{name}: ERROR {type(err).__name__}: {err}")
            traceback.print_exc()
        report[name]["section_s"] = time.perf_counter() - t0
        log(f"{name}: done in {report[name]['section_s']:.1f} s")
    report["checks"] = checks.items
    report["errors"] = errors
    report["total_s"] = time.perf_counter() - started
    report["all_ok"] = not errors and all(c["ok"] for c in checks.items)

    text = json.dumps(report, indent=2, default=str)
    out_path.write_text(text + "\n")
    print(text)
    failed = [c["name"] for c in checks.items if not c["ok"]]
    log(f"{len(checks.items) - len(failed)}/{len(checks.items)} checks passed, {len(errors)} section errors, "
        f"{report['total_s']:.1f} s; wrote {out_path}")
    for name in failed:
        log(f"  FAILED: {name}")
    return 0 if report["all_ok"] else 1


if __name__ == "__main__":
    raise SystemExit(main())
