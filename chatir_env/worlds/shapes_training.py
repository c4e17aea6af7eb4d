"""Training data and evaluation for the Shapes dual encoder (used with ``train.retriever``)."""

from __future__ import annotations

import numpy as np
import torch

from ..dialog import Dialog
from ..metrics import per_round_hits_at_k, target_ranks
from .shapes_language import (
    ANSWERS,
    POOL_TEXTS,
    QUESTION_KINDS,
    QUESTION_POOL,
    answer_table,
    caption_facts,
    caption_facts_and_slots,
    caption_text,
)
from .shapes_scenes import PERTURBATIONS, SceneSet, perturb_scenes, render_scenes, sample_scenes

TRAINING_SCENES_SEED = 3
_BY_KIND = {k: [i for i, q in enumerate(QUESTION_POOL) if q.kind == k] for k in QUESTION_KINDS}


def balanced_questions(rng: np.random.Generator, n: int) -> list[int]:
    """``n`` distinct pool questions: a kind uniformly, then a question of that kind uniformly.

    A uniform draw over the pool is mostly "is there a <colour> <shape>?" (48 of 121, mostly "no");
    drawing by kind gives the encoder as many answers about position, size and colour as about existence.
    """
    chosen: list[int] = []
    while len(chosen) < n:
        q = int(rng.choice(_BY_KIND[QUESTION_KINDS[rng.integers(len(QUESTION_KINDS))]]))
        if q not in chosen:
            chosen.append(q)
    return chosen


def caption_violations(scenes: SceneSet, caption_seed: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Per scene, one change (``perturb_scenes``' ``which``, ``obj``) that falsifies one fact of its caption.

    The fact is drawn uniformly among those the caption states: each mentioned object's colour and
    shape, its size when the caption names it, and the background when named. The changed scene then
    satisfies every other fact, the hardest negative for the caption alone.
    """
    which = np.empty(len(scenes), dtype=np.int64)
    obj = np.empty(len(scenes), dtype=np.int64)
    for i in range(len(scenes)):
        facts, slots = caption_facts_and_slots(scenes, i, caption_seed)
        options = [(PERTURBATIONS.index(field), slot) for (size, _, _), slot in zip(facts.objects, slots)
                   for field in (("shape", "colour", "size") if size is not None else ("shape", "colour"))]
        if facts.background is not None:
            options.append((PERTURBATIONS.index("background"), 0))
        which[i], obj[i] = options[rng.integers(len(options))]
    return which, obj


class ShapesDialogSampler:
    """Batches of (pixels, dialogs): half anchors, half one-change twins of them (hard negatives).

    Each pair shares the questions of its dialog; each scene gets its own caption and answers, so
    the only way to tell a twin from its anchor is to read the answers. With ``caption_negatives``
    p, a share p of the twins change a fact the anchor's caption states (``caption_violations``)
    rather than a random attribute, which most captions do not mention.
    """

    def __init__(self, batch_size: int = 256, num_scenes: int = 200_000, image_size: int = 36, answer_noise: float = 0.0,
                 max_rounds: int = 10, caption_mask: float = 0.0, caption_negatives: float = 0.0, seed: int = 0):
        self.scenes = sample_scenes(num_scenes, TRAINING_SCENES_SEED)
        self.batch_size, self.image_size, self.max_rounds = batch_size, image_size, max_rounds
        self.answer_noise, self.caption_mask, self.seed = answer_noise, caption_mask, seed
        self.caption_negatives = caption_negatives

    def __call__(self, step: int) -> tuple[torch.Tensor, list[Dialog]]:
        rng = np.random.default_rng([self.seed, step])
        half = self.batch_size // 2
        anchors = self.scenes.subset(rng.choice(len(self.scenes), half, replace=False))
        twin_seed = int(rng.integers(1 << 31))
        caption_seed = int(rng.integers(1 << 31))
        which = obj = None
        if self.caption_negatives:
            # A separate stream, so that caption_negatives=0 draws exactly the batches it always did.
            side = np.random.default_rng([self.seed, step, 1])
            which, obj = caption_violations(anchors, caption_seed, side)
            keep_random = side.random(half) >= self.caption_negatives
            which[keep_random], obj[keep_random] = -1, -1
        twins = perturb_scenes(anchors, seed=twin_seed, which=which, obj=obj)
        dialogs: list[Dialog] = []
        pixels = []
        lengths = rng.integers(0, self.max_rounds + 1, half)
        questions = [balanced_questions(rng, int(n)) for n in lengths]
        for part in (anchors, twins):
            table = answer_table(part)
            for i in range(half):
                caption = caption_text(caption_facts(part, i, caption_seed))
                if self.caption_mask and rng.random() < self.caption_mask:
                    caption = ""
                turns = []
                for q in questions[i]:
                    a = int(table[i, q])
                    if self.answer_noise and rng.random() < self.answer_noise:
                        options = [x for x in QUESTION_POOL[q].answers if x != ANSWERS[a]]
                        turns.append((POOL_TEXTS[q], options[rng.integers(len(options))]))
                    else:
                        turns.append((POOL_TEXTS[q], ANSWERS[a]))
                dialogs.append(Dialog(caption, tuple(turns)))
            pixels.append(render_scenes(part, self.image_size))
        return torch.from_numpy(np.concatenate(pixels)), dialogs


class ShapesRetrievalProbe:
    """Held-out Hits@10 after 0, 5 and 10 random balanced questions, on a small corpus."""

    def __init__(self, corpus_size: int = 5_000, num_targets: int = 500, image_size: int = 36, seed: int = 99):
        from .shapes_language import captions

        self.scenes = sample_scenes(corpus_size, 10_000 + seed)
        self.pixels = torch.from_numpy(render_scenes(self.scenes, image_size))
        table = answer_table(self.scenes)
        rng = np.random.default_rng(seed)
        self.targets = torch.from_numpy(rng.choice(corpus_size, num_targets, replace=False))
        caps = captions(self.scenes, seed)
        self.dialogs = {r: [] for r in (0, 5, 10)}
        for t in self.targets.tolist():
            qs = balanced_questions(rng, 10)
            full = Dialog(caps[t], tuple((POOL_TEXTS[q], ANSWERS[table[t, q]]) for q in qs))
            for r in self.dialogs:
                self.dialogs[r].append(full.truncated(r))

    @torch.no_grad()
    def __call__(self, model) -> dict[str, float]:
        images = torch.cat([model.image_features(self.pixels[i : i + 1000]) for i in range(0, len(self.pixels), 1000)])
        out = {}
        for r, dialogs in self.dialogs.items():
            ranks = target_ranks(model.dialog_features(dialogs), images, self.targets)
            out[f"hits10_round{r}"] = float(per_round_hits_at_k(ranks[None].numpy())[0])
            out[f"mean_log_rank_round{r}"] = float(np.log1p(ranks.numpy()).mean())
        return out
