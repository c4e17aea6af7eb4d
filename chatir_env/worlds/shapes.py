"""The Shapes worlds: ``shapes`` (learned dual encoder) and ``shapes_oracle`` (exact retriever).

Corpora are seeded: the ``train`` split (the default, what ``gymnasium.make`` and training use) and the
``benchmark`` split (what evaluation asks for by name) draw different scenes, and each split's targets
are a fixed random subset of its corpus (2,064, as many as ChatIR's VisDial targets). Encoded corpora
are cached in memory per process and, for the learned encoder, on disk.
"""

from __future__ import annotations

import functools
import json
import os
from importlib import resources
from pathlib import Path

import numpy as np
from safetensors.torch import load_file

from ..index import ImageIndex
from .base import World, register_world
from .shapes_language import POOL_TEXTS, answer_table, captions
from .shapes_oracle import ShapesOracle
from .shapes_retrievers import ShapesDualEncoder, ShapesExactRetriever, ShapesLearnedRetriever
from .shapes_scenes import SceneSet, render_scene, sample_scenes

SPLIT_SEEDS = {"train": 1, "benchmark": 2}
DEFAULT_SPLIT = "train"  # a world built without naming a split must never hand out the benchmark's targets
SPLIT_WORLDS = ("shapes", "shapes_oracle")  # the registered worlds that take ``split``; evaluation names "benchmark"
CAPTION_SEED = 11
TARGET_SEED = 12
DEFAULT_WEIGHTS = "shapes_dual"


def cache_dir() -> Path:
    return Path(os.environ.get("CHATIR_CACHE", Path.home() / ".cache" / "chatir_env"))


@functools.lru_cache(maxsize=4)
def scene_corpus(split: str, corpus_size: int) -> tuple[SceneSet, np.ndarray, tuple[str, ...], tuple[str, ...]]:
    """(scenes, answer table, ids, captions) of a split's corpus."""
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}")
    if corpus_size < 10:
        raise ValueError(f"corpus_size must be at least 10, got {corpus_size}")
    scenes = sample_scenes(corpus_size, SPLIT_SEEDS[split])
    ids = tuple(f"shapes-{split}-{i:06d}" for i in range(corpus_size))
    return scenes, answer_table(scenes), ids, tuple(captions(scenes, CAPTION_SEED + SPLIT_SEEDS[split]))


def weights_path(name: str = DEFAULT_WEIGHTS) -> Path:
    """A packaged weight file by name, or a path to one (``.safetensors`` with a ``.json`` beside it)."""
    path = Path(name)
    if path.suffix == ".safetensors" or path.exists():
        return path
    return Path(str(resources.files("chatir_env.worlds") / "weights" / f"{name}.safetensors"))


def load_dual_encoder(name: str = DEFAULT_WEIGHTS) -> ShapesDualEncoder:
    path = weights_path(name)
    meta_path = path.with_suffix(".json")
    if not path.exists() or not meta_path.exists():
        raise FileNotFoundError(
            f"Shapes encoder weights {path} (and {meta_path.name}) not found; train them with "
            f"`chatir train retriever --config retriever_shapes` and pass weights=<path>"
        )
    meta = json.loads(meta_path.read_text())
    model = ShapesDualEncoder(**meta["model"])
    model.load_state_dict(load_file(str(path)))
    return model.eval()


@functools.lru_cache(maxsize=4)
def _learned_retriever(weights: str, device: str) -> ShapesLearnedRetriever:
    return ShapesLearnedRetriever(load_dual_encoder(weights), device=device)


@functools.lru_cache(maxsize=8)
def _index(split: str, corpus_size: int, retriever_kind: str, weights: str, answer_noise: float, device: str):
    scenes, _, ids, _ = scene_corpus(split, corpus_size)
    if retriever_kind == "exact":
        retriever = ShapesExactRetriever(answer_noise, device=device)
        return retriever, ImageIndex(retriever.encode_images(scenes), list(ids), retriever.fingerprint)
    retriever = _learned_retriever(weights, device)
    path = cache_dir() / "index" / f"{retriever.fingerprint}-{split}-{corpus_size}"
    try:
        index = ImageIndex.load(path, device=device, fingerprint=retriever.fingerprint)
        if index.ids == list(ids):
            return retriever, index
    except (FileNotFoundError, ValueError):
        pass
    index = ImageIndex(retriever.encode_images(scenes), list(ids), retriever.fingerprint, {"world": "shapes", "split": split})
    try:
        index.save(path)
    except OSError:
        pass  # a read-only cache only costs the next process a re-encode
    return retriever, index


def build_shapes_world(
    split: str = DEFAULT_SPLIT,
    retriever: str = "learned",
    corpus_size: int = 50_000,
    num_targets: int | None = 2_064,
    answer_noise: float = 0.0,
    weights: str = DEFAULT_WEIGHTS,
    device: str = "cpu",
    image_size: int = 36,
    target_set: str | None = None,
) -> World:
    """A Shapes world.

    Ties: the exact scorer ties many scenes with the target (a median of 44 from the caption alone), and
    ``target_ranks`` puts tied scenes with a lower corpus index first. Scenes are drawn independently and
    the targets are a random subset, so the corpus order is itself a random order: the stable rule is one
    draw of random tie-breaking, unbiased over the whole benchmark (never take the first N targets, whose
    low indices win their ties: ``chatir_env.target_sample``). Its draw's luck is measured by
    ``bench/bench_tie_rule.py``: against the mean of 10 random tie orders the demo rows differ by at most
    1.24 points at any round (the template questioner, 1.5-2.6 standard deviations of a single draw at
    rounds 2-10), caption-only by 0.04.

    Args:
        split: whose scenes make the corpus and the targets: ``"train"`` (the default: training never
            sees a benchmark scene unless asked) or ``"benchmark"`` (evaluation names it explicitly).
        retriever: ``"learned"`` (the shipped dual encoder) or ``"exact"`` (the log-likelihood of the
            dialog under the oracle's answer model).
        corpus_size: scenes in the corpus (at least 10); the benchmark's is 50,000.
        num_targets: how many of the corpus' scenes episodes draw targets from (None: all of them),
            a fixed random subset (the benchmark's 2,064).
        answer_noise: probability that the oracle answers with another of the question's answers (the
            exact retriever models the same noise).
        weights: the learned encoder's weights: a packaged name or a ``.safetensors`` path with its
            ``.json`` beside it.
        device: torch device of the retriever and the index.
        image_size: side in pixels of rendered scenes (contact sheets, ``render``).
        target_set: None (the split's own targets), the split's name (the same), or ``"validation"``:
            the last ``num_targets`` of the same permutation, held out from the split's targets, for
            model selection during training.

    Returns:
        The world; ``world.config`` records every argument, ``target_set`` as the set actually used.

    Raises:
        ValueError: an unknown split, retriever or target set, or a corpus under 10 scenes.
    """
    if split not in SPLIT_SEEDS:
        raise ValueError(f"unknown split {split!r}; choose one of {', '.join(SPLIT_SEEDS)}")
    if target_set is None:
        target_set = split
    if target_set not in (split, "validation"):
        raise ValueError(f"target_set must be {split!r} (the split's own targets) or 'validation' with split={split!r}, "
                         f"got {target_set!r}")
    if retriever not in ("learned", "exact"):
        raise ValueError(f"Shapes retriever must be 'learned' or 'exact', got {retriever!r}")
    scenes, table, ids, caps = scene_corpus(split, corpus_size)
    ret, index = _index(split, corpus_size, retriever, str(weights), float(answer_noise), str(device))
    order = np.random.default_rng(TARGET_SEED).permutation(corpus_size)
    count = corpus_size if num_targets is None else min(num_targets, corpus_size)
    # Validation targets come from the far end of the permutation: disjoint from the split's own
    # whenever the corpus holds both (50,000 scenes: 2,064 + up to 47,936).
    chosen = order[corpus_size - count :] if target_set == "validation" else order[:count]
    targets = [ids[i] for i in sorted(chosen)]
    rows = {image_id: i for i, image_id in enumerate(ids)}

    def image(image_id: str):
        return render_scene(scenes, rows[image_id], image_size)

    return World(
        name="shapes_oracle" if retriever == "exact" else "shapes",
        retriever=ret,
        index=index,
        answerer=ShapesOracle(table, rows, answer_noise),
        targets=targets,
        captions={t: caps[rows[t]] for t in targets},
        question_pool=lambda target: POOL_TEXTS,
        image=image,
        pool_answers=lambda image_ids: table[[rows[i] for i in image_ids]],
        config={"world": "shapes", "split": split, "retriever": retriever, "corpus_size": corpus_size,
                "num_targets": num_targets, "target_set": target_set, "answer_noise": answer_noise, "weights": str(weights)},
    )


register_world("shapes", build_shapes_world)
register_world("shapes_oracle", functools.partial(build_shapes_world, retriever="exact"))
