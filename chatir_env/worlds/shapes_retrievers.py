"""The two Shapes retrievers behind the Retriever protocol.

* ``ShapesExactRetriever``: scores a scene by the log-likelihood of the dialog under the oracle's
  noise model (and of the caption under the caption model), written as a dot product of a dialog
  vector and a scene vector of answer indicators, so it runs through ``ImageIndex`` and
  ``target_ranks`` like any learned model.
* ``ShapesDualEncoder``: a learned CNN image encoder and a two-level transformer dialog encoder
  (tokens within a turn, then turns within the dialog), trained by ``chatir train retriever``.
"""

from __future__ import annotations

import hashlib
import math
import re
from typing import Sequence

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..dialog import Dialog
from .shapes_language import (
    ANSWER_ID,
    ANSWERS,
    BACKGROUNDS,
    NUMBERS,
    P_TWO_MENTIONS,
    PLURAL,
    POOL_TEXTS,
    QUESTION_POOL,
    answer_table,
    parse_caption,
    parse_question,
)
from .shapes_scenes import COLOURS, SHAPES, SIZES, SceneSet, render_scenes

# ---------------------------------------------------------------------------------------------------
# exact retriever


class ShapesExactRetriever:
    """Exact log-likelihood scorer: ``score(dialog, scene) = dialog_vector . scene_vector``.

    Scene vector: one indicator per (pool question, possible answer) that holds for the scene, plus
    indicators for the facts a caption can assert that no single question covers (a sized object,
    two alike objects). Dialog vector: for each turn, ``ln(1 - p) - ln(p / (K - 1))`` on the
    indicator of the observed answer (K answers, noise p); for the caption, a weight large enough to
    act as a hard constraint on each asserted fact, plus ``ln P(m mentions | n objects) - ln C(n, m)``
    on the count indicators. Scores are log-likelihoods up to a constant shared by all scenes; the
    caption term is exact for scenes without two objects of the same colour and shape.
    """

    CAPTION_WEIGHT = 1000.0
    scores_are_log_likelihoods = True

    def __init__(self, answer_noise: float = 0.0, noise_floor: float = 1e-3, device: str | torch.device = "cpu"):
        self.answer_noise = float(answer_noise)
        self.model_noise = max(self.answer_noise, noise_floor)
        self.device = torch.device(device)
        offsets, dim = [], 0
        for q in QUESTION_POOL:
            offsets.append(dim)
            dim += len(q.answers)
        self._question_offset = offsets
        self._answer_slot = [{ANSWER_ID[a]: k for k, a in enumerate(q.answers)} for q in QUESTION_POOL]
        self._sized_offset = dim  # exists (size, colour, shape): 2 * 8 * 6
        self._pair_offset = dim + 96  # at least two (colour, shape): 8 * 6
        self.dim = dim + 96 + 48
        self.fingerprint = f"shapes-exact-v1-noise{self.model_noise:g}"
        self._log_ratio = [
            math.log(1 - self.model_noise) - math.log(self.model_noise / (len(q.answers) - 1)) for q in QUESTION_POOL
        ]
        self._count_question = POOL_TEXTS.index("how many objects are there?")
        self._background_question = POOL_TEXTS.index("what is the background?")
        self._exists_question = {
            (c, s): POOL_TEXTS.index(f"is there {'an' if COLOURS[c][0] in 'aeiou' else 'a'} {COLOURS[c]} {SHAPES[s]}?")
            for c in range(8) for s in range(6)
        }

    def _slot(self, question: int, answer_id: int) -> int | None:
        k = self._answer_slot[question].get(answer_id)
        return None if k is None else self._question_offset[question] + k

    def encode_images(self, scenes: SceneSet) -> torch.Tensor:
        table = answer_table(scenes)
        out = np.zeros((len(scenes), self.dim), dtype=np.float32)
        rows = np.arange(len(scenes))
        for q in range(len(QUESTION_POOL)):
            lookup = np.full(len(ANSWERS), -1)
            for answer_id, k in self._answer_slot[q].items():
                lookup[answer_id] = self._question_offset[q] + k
            out[rows, lookup[table[:, q]]] = 1.0
        for z in range(2):
            for c in range(8):
                for s in range(6):
                    hit = ((scenes.size == z) & (scenes.colour == c) & (scenes.shape == s)).any(1)
                    out[hit, self._sized_offset + (z * 8 + c) * 6 + s] = 1.0
        for c in range(8):
            for s in range(6):
                two = ((scenes.colour == c) & (scenes.shape == s)).sum(1) >= 2
                out[two, self._pair_offset + c * 6 + s] = 1.0
        return torch.from_numpy(out).to(self.device)

    def dialog_vector(self, dialog: Dialog) -> np.ndarray:
        v = np.zeros(self.dim, dtype=np.float64)
        facts = parse_caption(dialog.caption)
        if facts is not None:
            w = self.CAPTION_WEIGHT
            for size, c, s in facts.objects:
                if size is None:
                    v[self._slot(self._exists_question[(c, s)], ANSWER_ID["yes"])] += w
                else:
                    v[self._sized_offset + (size * 8 + c) * 6 + s] += w
            if len(facts.objects) == 2 and facts.objects[0] == facts.objects[1]:
                c, s = facts.objects[0][1:]
                v[self._pair_offset + c * 6 + s] += w
            if facts.background is not None:
                v[self._slot(self._background_question, ANSWER_ID[BACKGROUNDS[facts.background]])] += w
            if facts.count is not None:
                v[self._slot(self._count_question, ANSWER_ID[NUMBERS[facts.count]])] += w
            m = len(facts.objects)
            for n in range(1, 5):
                if n < m:
                    log_p = -w
                elif n == 1:
                    log_p = 0.0
                else:
                    log_p = math.log(P_TWO_MENTIONS if m == 2 else 1 - P_TWO_MENTIONS) - math.log(math.comb(n, m))
                v[self._slot(self._count_question, ANSWER_ID[NUMBERS[n]])] += log_p
        for question, answer in dialog.turns:
            q = parse_question(question)
            answer_id = ANSWER_ID.get(answer.strip().lower())
            if q is None or answer_id is None:
                continue  # an unparsable question, or an answer outside the oracle's language: no evidence
            slot = self._slot(q, answer_id)
            if slot is not None:
                v[slot] += self._log_ratio[q]
        return v

    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> torch.Tensor:
        vectors = np.stack([self.dialog_vector(d) for d in dialogs]) if dialogs else np.zeros((0, self.dim))
        return torch.from_numpy(vectors.astype(np.float32)).to(self.device)


# ---------------------------------------------------------------------------------------------------
# learned dual encoder

SPECIAL_TOKENS = ("[PAD]", "[CLS]", "[UNK]", "[Q]", "[A]")
_TOKEN_RE = re.compile(r"[a-z']+|[?:]")


def tokenize(text: str) -> list[str]:
    return _TOKEN_RE.findall(text.lower())


def shapes_vocabulary() -> list[str]:
    words: set[str] = set()
    for text in (*POOL_TEXTS, *ANSWERS, *NUMBERS, *PLURAL.values(), *BACKGROUNDS, *SIZES):
        words.update(tokenize(text))
    words.update(("shape", "shapes", "with", "on", "and", "two", ":", "color", "colour"))
    return list(SPECIAL_TOKENS) + sorted(words)


class ImageTower(nn.Module):
    """A small CNN whose last feature map is the 3x3 grid of scene cells."""

    def __init__(self, dim: int, width: int = 32):
        super().__init__()
        w = width
        self.net = nn.Sequential(
            nn.Conv2d(3, w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),             # 36 -> 18
            nn.Conv2d(w, 2 * w, 3, padding=1), nn.GELU(), nn.MaxPool2d(2),         # 18 -> 9
            nn.Conv2d(2 * w, 2 * w, 3, padding=1), nn.GELU(), nn.MaxPool2d(3),     # 9 -> 3: one vector per cell
        )
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(2 * w * 9 + 3, 512), nn.GELU(), nn.Linear(512, dim))

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        x = pixels.permute(0, 3, 1, 2).float() / 255.0
        mean_colour = x.mean(dim=(2, 3))  # the background, cheaply
        features = self.net(x - 0.5)
        return self.head(torch.cat([features.flatten(1), mean_colour], dim=1))


class DialogTower(nn.Module):
    """Tokens -> one vector per segment (caption or turn), then segments -> one dialog vector.

    Attention within a segment binds an answer to the object its question names ("where is the
    star? top left"); attention across segments combines the evidence of all turns.
    """

    def __init__(self, vocab_size: int, dim: int, width: int = 128, max_tokens: int = 24, max_segments: int = 16):
        super().__init__()
        self.max_tokens, self.max_segments = max_tokens, max_segments
        self.token = nn.Embedding(vocab_size, width, padding_idx=0)
        self.position = nn.Embedding(max_tokens, width)
        layer = lambda: nn.TransformerEncoderLayer(width, 4, 2 * width, dropout=0.0, batch_first=True, norm_first=True)
        self.within = nn.TransformerEncoder(layer(), 2, enable_nested_tensor=False)
        self.segment_kind = nn.Embedding(2, width)  # caption, turn
        self.across = nn.TransformerEncoder(layer(), 2, enable_nested_tensor=False)
        self.head = nn.Sequential(nn.LayerNorm(width), nn.Linear(width, dim))

    def forward(self, tokens: torch.Tensor, segments: torch.Tensor) -> torch.Tensor:
        """``tokens[S, L]`` (all segments of the batch), ``segments[B, M]`` (row of each segment, -1 = pad)."""
        positions = torch.arange(tokens.shape[1], device=tokens.device)
        x = self.token(tokens) + self.position(positions)[None]
        x = self.within(x, src_key_padding_mask=tokens == 0)[:, 0]  # [CLS] of each segment
        mask = segments < 0
        seg = x[segments.clamp(min=0)]
        kinds = torch.ones_like(segments)
        kinds[:, 0] = 0
        seg = seg + self.segment_kind(kinds)
        seg = self.across(seg, src_key_padding_mask=mask)
        pooled = (seg * (~mask)[..., None]).sum(1) / (~mask).sum(1, keepdim=True)
        return self.head(pooled)


class ShapesDualEncoder(nn.Module):
    """Learned Shapes retriever: ``image_features(pixels)`` and ``dialog_features(dialogs)``, unit norm."""

    def __init__(self, dim: int = 256, image_size: int = 36, cnn_width: int = 32, text_width: int = 96):
        super().__init__()
        self.config = {"dim": dim, "image_size": image_size, "cnn_width": cnn_width, "text_width": text_width}
        self.vocab = shapes_vocabulary()
        self._token_id = {t: i for i, t in enumerate(self.vocab)}
        self.image_tower = ImageTower(dim, cnn_width)
        self.dialog_tower = DialogTower(len(self.vocab), dim, text_width)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))

    def _ids(self, words: list[str]) -> list[int]:
        unk = self._token_id["[UNK]"]
        return [self._token_id.get(w, unk) for w in words]

    def tokenize_dialogs(self, dialogs: Sequence[Dialog]) -> tuple[torch.Tensor, torch.Tensor]:
        """``tokens[S, L]`` of the batch's distinct segments, and ``index[B, M]`` (-1 = no segment).

        Turns repeat across a batch ("is there a red star? no"), so each distinct segment is
        encoded once; rows are padded to the longest segment, not to ``max_tokens``.
        """
        L, M = self.dialog_tower.max_tokens, self.dialog_tower.max_segments
        rows: dict[tuple[int, ...], int] = {}
        index = torch.full((len(dialogs), min(M, 1 + max((d.round for d in dialogs), default=0))), -1, dtype=torch.long)
        cls, q_tok, a_tok = self._token_id["[CLS]"], self._token_id["[Q]"], self._token_id["[A]"]
        for b, dialog in enumerate(dialogs):
            segs = [[cls] + self._ids(tokenize(dialog.caption))]
            # Keep the latest turns if a dialog is longer than the encoder was built for.
            for q, a in dialog.turns[-(M - 1):]:
                segs.append([cls, q_tok] + self._ids(tokenize(q)) + [a_tok] + self._ids(tokenize(a)))
            for m, seg in enumerate(segs):
                index[b, m] = rows.setdefault(tuple(seg[:L]), len(rows))
        width = max(len(seg) for seg in rows)
        tokens = torch.zeros((len(rows), width), dtype=torch.long)
        for seg, i in rows.items():
            tokens[i, : len(seg)] = torch.tensor(seg)
        return tokens, index

    def image_features(self, pixels: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.image_tower(pixels), dim=-1)

    def dialog_features(self, dialogs: Sequence[Dialog]) -> torch.Tensor:
        device = self.logit_scale.device
        tokens, index = self.tokenize_dialogs(dialogs)
        return F.normalize(self.dialog_tower(tokens.to(device), index.to(device)), dim=-1)


class ShapesLearnedRetriever:
    """``ShapesDualEncoder`` behind the Retriever protocol (batched, no grad, on ``device``)."""

    def __init__(self, model: ShapesDualEncoder, device: str | torch.device = "cpu", batch_size: int = 1024):
        self.model = model.to(device).eval()
        self.device = torch.device(device)
        self.dim = model.config["dim"]
        self.batch_size = batch_size
        self.fingerprint = "shapes-dual-" + state_dict_digest(model)
        # The InfoNCE inverse temperature the encoder was trained with: softmax(logit_scale * cosine) is the
        # posterior over images the training loss calibrated, so candidate weighting reads it from the weights.
        self.logit_scale = float(model.logit_scale.detach().exp())

    @torch.inference_mode()
    def encode_images(self, scenes: SceneSet | np.ndarray) -> torch.Tensor:
        size = self.model.config["image_size"]
        out = []
        for start in range(0, len(scenes), self.batch_size):
            rows = range(start, min(start + self.batch_size, len(scenes)))
            pixels = scenes[start : rows.stop] if isinstance(scenes, np.ndarray) else render_scenes(scenes, size, rows)
            out.append(self.model.image_features(torch.from_numpy(np.ascontiguousarray(pixels)).to(self.device)))
        return torch.cat(out) if out else torch.zeros((0, self.dim), device=self.device)

    @torch.inference_mode()
    def encode_dialogs(self, dialogs: Sequence[Dialog]) -> torch.Tensor:
        out = [self.model.dialog_features(dialogs[i : i + self.batch_size]) for i in range(0, len(dialogs), self.batch_size)]
        return torch.cat(out) if out else torch.zeros((0, self.dim), device=self.device)


def state_dict_digest(model: nn.Module) -> str:
    """A short hash of every weight: two different models never share an index."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]
