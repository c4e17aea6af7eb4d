"""ChatIR's dialog encoder: BLIP's text side fine-tuned on VisDial v1.0 train dialogs.

    chatir train retriever --config configs/retriever_visdial_blip.yaml

The recipe of ChatIR (Levy et al., NeurIPS 2023, Sec. 4), run by the same generic trainer as the
Shapes encoder (``train.retriever.train_retriever``):

* model: HF ``BlipForImageTextRetrieval`` (BLIP ViT-B, initialised from BLIP's COCO retrieval
  weights or any BLIP checkpoint). The image side is frozen: each training image's feature
  ``normalize(vision_proj(ViT(img)[:, 0]))`` is computed once and cached (``data.features``, an
  ``ImageIndex`` written by the resumable ``chatir index`` builder). The text encoder and
  ``text_proj`` are trained, with a learned temperature (``logit_scale``, from 1/0.07);
* data: each step draws ``batch_size`` dialogs of distinct images, each cut at a round drawn
  uniformly from 0..``max_rounds``; with probability ``caption_mask`` (0.2) a dialog with at least
  one turn loses its caption (the query is then the turns alone). The query string is ChatIR's
  (``Dialog.text()``: caption and "question answer" turns joined by ", ");
* loss: symmetric InfoNCE over the batch; AdamW at 5e-5 with exponential decay
  (``lr_decay ** (step / decay_every)``);
* evaluation on held-out pairs (``data.val_file``, or the last ``data.heldout`` pairs of the
  training file): Recall@1/5/10 dialog -> image and image -> dialog with full dialogs (the metrics
  of ChatIR's Table 1), and per-round Hits@10 (rounds 0..``max_rounds``) among the held-out images.

The run writes ``checkpoint.pt`` (text side + optimiser; rerunning resumes), TensorBoard logs,
``history.json``, ``metrics.json`` and the trained retriever as an HF directory ``retriever/`` that
``BlipDialogRetriever.from_pretrained`` (and ``chatir index --retriever blip --model``) loads. The
retriever's fingerprint covers its text weights, so the search space must be indexed again with it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field
from torch import nn

from ..atomic import atomic_write_json
from ..config import ConfigError, Schema, validate
from ..data.visdial_train import coco2014_image_id, load_visdial_train
from ..dialog import Dialog
from ..metrics import target_ranks
from .retriever import RetrieverTrainConfig, train_retriever

ORIGINAL_SUFFIXES = {".ckpt", ".pth", ".pt", ".bin", ".safetensors"}


class VisDialModelConfig(Schema):
    """The BLIP model whose text side is trained: the ``model:`` section."""

    init: str = Field("", description="HF dir (BlipForImageTextRetrieval + tokenizer) or an original BLIP checkpoint file")
    tokenizer: str | None = Field(None, description="tokenizer dir for an original checkpoint "
                                                    "(default: the hub's BLIP tokenizer)")
    device: str | None = Field(None, description="torch device (None: CUDA when available)")
    max_length: int = Field(200, ge=8, description="dialog tokens kept, as ChatIR")
    image_batch_size: int = Field(64, ge=1, description="images per forward pass when caching features")


class VisDialDataConfig(Schema):
    """The training dialogs and images: the ``data:`` section."""

    train_file: str = Field("", description="VisDial v1.0 train json, or a ChatIR dialog file (format: chatir)")
    format: Literal["visdial", "chatir"] = Field("visdial", description="the train file's format")
    image_root: str = Field("", description="folder the image paths are relative to")
    image_id: str = Field("coco2014", description='VisDial image_id -> path: "coco2014" (train2014/ or val2014/) '
                                                  "or a format string")
    val_file: str | None = Field(None, description="held-out pairs from another file (same format); "
                                                   "else the last `heldout` pairs")
    heldout: int = Field(2_000, ge=0, description="held-out pairs (from val_file, or cut from the end of train_file)")
    limit: int | None = Field(None, ge=1, description="use only the first n dialogs of train_file (smoke runs)")
    max_rounds: int = Field(10, ge=0, description="dialogs are cut at a round drawn uniformly from 0..max_rounds")
    caption_mask: float = Field(0.2, ge=0, le=1, description="probability that a dialog with turns loses its caption")
    features: str | None = Field(None, description="image-feature cache (default: <out_dir>/image_features)")


class VisDialRetrieverConfig(Schema):
    """``chatir train retriever`` with ``world: visdial``: BLIP's text side on VisDial dialogs."""

    world: Literal["visdial"] = Field("visdial", description="the paper's setting")
    model: VisDialModelConfig = Field(default_factory=VisDialModelConfig, description="the BLIP model")
    data: VisDialDataConfig = Field(default_factory=VisDialDataConfig, description="training dialogs and images")
    train: RetrieverTrainConfig = Field(default_factory=RetrieverTrainConfig, description="the trainer")


# --- data ------------------------------------------------------------------------------------------


def load_pairs(path: str, data: VisDialDataConfig) -> list[tuple[str, Dialog]]:
    from ..data.chatir_files import load_dialog_file

    if data.format == "chatir":
        return load_dialog_file(path)
    if data.format != "visdial":
        raise ConfigError(f"data.format must be 'visdial' or 'chatir', got {data.format!r}")
    image_id = coco2014_image_id(data.image_root) if data.image_id == "coco2014" else data.image_id
    return load_visdial_train(path, image_id=image_id)


def split_pairs(data: VisDialDataConfig) -> tuple[list[tuple[str, Dialog]], list[tuple[str, Dialog]]]:
    """(training pairs, held-out pairs); no image is in both."""
    pairs = load_pairs(data.train_file, data)
    if data.limit:
        pairs = pairs[: data.limit]
    if data.val_file:
        heldout = load_pairs(data.val_file, data)[: data.heldout or None]
    else:
        if not 0 < data.heldout < len(pairs):
            raise ConfigError(f"data.heldout must be between 1 and {len(pairs) - 1} (the pairs loaded), got {data.heldout}")
        pairs, heldout = pairs[: -data.heldout], pairs[-data.heldout :]
    held = {i for i, _ in heldout}
    return [p for p in pairs if p[0] not in held], heldout


def query_text(dialog: Dialog) -> str:
    """ChatIR's query string; a masked (empty) caption leaves the turns alone, without a leading ", "."""
    return dialog.text() if dialog.caption else ", ".join(dialog.turn_strings())


class VisDialDialogSampler:
    """``sample(step) -> (feature rows, dialogs)``: distinct images, random length, caption masking."""

    def __init__(self, rows: Sequence[int], dialogs: Sequence[Dialog], batch_size: int, max_rounds: int = 10,
                 caption_mask: float = 0.2, seed: int = 0):
        if len(rows) != len(dialogs):
            raise ValueError("one feature row per dialog")
        if batch_size > len(rows):
            raise ConfigError(f"batch_size {batch_size} is larger than the {len(rows)} training pairs")
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)
        self.dialogs = list(dialogs)
        self.batch_size, self.max_rounds, self.caption_mask, self.seed = batch_size, max_rounds, caption_mask, seed

    def __call__(self, step: int) -> tuple[torch.Tensor, list[Dialog]]:
        rng = np.random.default_rng([self.seed, step])
        chosen = rng.choice(len(self.rows), self.batch_size, replace=False)
        lengths = rng.integers(0, self.max_rounds + 1, self.batch_size)
        masked = rng.random(self.batch_size) < self.caption_mask
        dialogs = []
        for i, n, mask in zip(chosen, lengths, masked):
            dialog = self.dialogs[i].truncated(int(n))
            if mask and dialog.round > 0:
                dialog = Dialog("", dialog.turns)
            dialogs.append(dialog)
        return self.rows[torch.from_numpy(chosen)], dialogs


# --- the model -------------------------------------------------------------------------------------


class BlipTextSide(nn.Module):
    """BLIP's trainable text side against a frozen, precomputed image-feature bank.

    ``image_features(rows)`` looks rows up in the bank (unit vectors, no gradient);
    ``dialog_features(dialogs)`` is ``BlipDialogRetriever.encode_dialogs`` with gradients;
    ``logit_scale`` is the log inverse temperature. The text encoder and ``text_proj`` are the BLIP
    model's own modules (trained in place); the vision side is not part of this module.
    """

    def __init__(self, blip, tokenizer, bank: torch.Tensor, max_length: int = 200, temperature: float = 0.07):
        super().__init__()
        self.text_encoder = blip.text_encoder
        self.text_proj = blip.text_proj
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1.0 / temperature)))
        self.tokenizer = tokenizer
        self.max_length = min(int(max_length), int(blip.config.text_config.max_position_embeddings))
        self.bank = bank  # a plain attribute: not trained, not in checkpoints
        for p in blip.vision_model.parameters():
            p.requires_grad_(False)
        for p in blip.vision_proj.parameters():
            p.requires_grad_(False)

    @property
    def device(self) -> torch.device:
        return self.logit_scale.device

    def image_features(self, rows: torch.Tensor) -> torch.Tensor:
        return self.bank[rows.to(self.bank.device)].to(self.device)

    def dialog_features(self, dialogs: Sequence[Dialog]) -> torch.Tensor:
        tokens = self.tokenizer([query_text(d) for d in dialogs], padding="longest", truncation=True,
                                max_length=self.max_length, return_tensors="pt")
        hidden = self.text_encoder(input_ids=tokens["input_ids"].to(self.device),
                                   attention_mask=tokens["attention_mask"].to(self.device), is_decoder=False).last_hidden_state
        return F.normalize(self.text_proj(hidden[:, 0, :]).float(), dim=-1)


# --- evaluation ------------------------------------------------------------------------------------


class HeldoutProbe:
    """R@1/5/10 in both directions with full dialogs, and per-round Hits@10, on held-out pairs."""

    def __init__(self, rows: Sequence[int], dialogs: Sequence[Dialog], max_rounds: int = 10, batch_size: int = 256):
        self.rows = torch.as_tensor(list(rows), dtype=torch.long)
        self.dialogs = list(dialogs)
        self.max_rounds, self.batch_size = max_rounds, batch_size

    def _encode(self, model: BlipTextSide, dialogs: list[Dialog]) -> torch.Tensor:
        return torch.cat([model.dialog_features(dialogs[i : i + self.batch_size])
                          for i in range(0, len(dialogs), self.batch_size)])

    @torch.no_grad()
    def __call__(self, model: BlipTextSide) -> dict[str, float]:
        images = model.image_features(self.rows).float()
        own = torch.arange(len(self.rows), device=images.device)
        out: dict[str, float] = {}
        full = self._encode(model, self.dialogs).to(images.device)
        d2i = target_ranks(full, images, own)
        i2d = target_ranks(images, full, own)
        for k in (1, 5, 10):
            out[f"dialog_to_image_r{k}"] = float((d2i < k).double().mean() * 100)
        for k in (1, 5, 10):
            out[f"image_to_dialog_r{k}"] = float((i2d < k).double().mean() * 100)
        for t in range(self.max_rounds + 1):
            ranks = d2i if all(d.round <= t for d in self.dialogs) else target_ranks(
                self._encode(model, [d.truncated(t) for d in self.dialogs]).to(images.device), images, own)
            out[f"hits10_round{t}"] = float((ranks < 10).double().mean() * 100)
        return out


# --- assembling a run ------------------------------------------------------------------------------


@dataclass
class VisDialTraining:
    model: BlipTextSide
    sampler: VisDialDialogSampler
    probe: HeldoutProbe
    cfg: RetrieverTrainConfig
    retriever: object            # the BlipDialogRetriever whose text side is trained in place
    features_path: Path
    dropped: int                 # pairs left out because their image was unusable


def _load_retriever(model_cfg: VisDialModelConfig, where: str):
    from ..retrievers.blip import DEFAULT_TOKENIZER, BlipDialogRetriever

    init = Path(model_cfg.init) if model_cfg.init else None
    if init is None or not init.exists():
        raise ConfigError(
            f"{where}: model.init {model_cfg.init!r} not found: give BLIP's COCO retrieval weights (an original "
            f"checkpoint such as model_base_retrieval_coco.pth, or an HF directory with the model and its tokenizer)"
        )
    if init.is_file() and init.suffix in ORIGINAL_SUFFIXES:
        return BlipDialogRetriever.from_original_checkpoint(init, tokenizer=model_cfg.tokenizer or DEFAULT_TOKENIZER,
                                                            device=model_cfg.device, max_length=model_cfg.max_length,
                                                            batch_size=model_cfg.image_batch_size)
    return BlipDialogRetriever.from_pretrained(init, device=model_cfg.device, tokenizer=model_cfg.tokenizer,
                                               max_length=model_cfg.max_length, batch_size=model_cfg.image_batch_size)


def image_feature_bank(retriever, ids: Sequence[str], image_root: str, path: Path, batch_size: int):
    """The frozen image features of ``ids``, cached at ``path`` (an ``ImageIndex``; resumable)."""
    from ..data.images import ImageCorpus
    from ..data.index_cli import build_index
    from ..index import ImageIndex

    tensor_path, meta_path = ImageIndex._paths(path)
    if tensor_path.exists() and meta_path.exists():
        index = ImageIndex.load(path, device="cpu", fingerprint=str(retriever.fingerprint))
        skipped = json.loads(meta_path.read_text()).get("meta", {}).get("skipped", 0)
        if set(index.ids) - set(ids) or len(index) + skipped < len(set(ids)):
            raise ConfigError(f"the image-feature cache {tensor_path} holds another set of images; delete it to rebuild")
        return index
    corpus = ImageCorpus(image_root, list(dict.fromkeys(ids)), description=f"training images under {image_root}")
    return build_index(retriever, corpus, path, batch_size, progress=True, meta={"purpose": "visdial retriever training"})


def build_visdial_training(config: dict, out_dir: str | None = None, steps: int | None = None) -> VisDialTraining:
    where = config.get("_path", "config")
    run_cfg = validate(VisDialRetrieverConfig, config)
    cfg, model_cfg, data = run_cfg.train, run_cfg.model, run_cfg.data
    if out_dir:
        cfg.out_dir = out_dir
    if steps:
        cfg.steps = steps
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if not data.train_file or not Path(data.train_file).is_file():
        raise ConfigError(
            f"{where}: data.train_file {data.train_file!r} not found (VisDial v1.0 train: visdial_1.0_train.json)")
    if not data.image_root or not Path(data.image_root).is_dir():
        raise ConfigError(f"{where}: data.image_root {data.image_root!r} is not a folder (COCO 2014 images for VisDial)")
    train_pairs, heldout = split_pairs(data)
    retriever = _load_retriever(model_cfg, where)
    features_path = Path(data.features) if data.features else Path(cfg.out_dir) / "image_features"
    features_path.parent.mkdir(parents=True, exist_ok=True)
    index = image_feature_bank(retriever, [i for i, _ in train_pairs + heldout], data.image_root, features_path,
                               model_cfg.image_batch_size)
    position = {image_id: row for row, image_id in enumerate(index.ids)}
    usable = lambda pairs: [(position[i], d) for i, d in pairs if i in position]
    train_rows, held_rows = usable(train_pairs), usable(heldout)
    dropped = len(train_pairs) + len(heldout) - len(train_rows) - len(held_rows)
    if not held_rows:
        raise ConfigError(f"{where}: none of the held-out pairs has a usable image under {data.image_root}")
    bank = index.embeddings.to(retriever.device)
    model = BlipTextSide(retriever.model, retriever.tokenizer, bank, model_cfg.max_length).to(retriever.device)
    sampler = VisDialDialogSampler([r for r, _ in train_rows], [d for _, d in train_rows], cfg.batch_size,
                                   data.max_rounds, data.caption_mask, cfg.seed)
    probe = HeldoutProbe([r for r, _ in held_rows], [d for _, d in held_rows], data.max_rounds)
    return VisDialTraining(model, sampler, probe, cfg, retriever, features_path, dropped)


def train_visdial(config: dict, out_dir: str | None = None, steps: int | None = None) -> int:
    """Train (or resume), evaluate, and export ``<out_dir>/retriever``; see the module docstring."""
    run = build_visdial_training(config, out_dir, steps)
    if run.dropped:
        print(f"left out {run.dropped} pairs whose image was unusable (see {run.features_path}.skipped.json)")
    result = train_retriever(run.model, run.sampler, run.cfg, evaluate=run.probe,
                             trainable=lambda m: [p for p in m.parameters() if p.requires_grad])
    out = Path(run.cfg.out_dir)
    run.retriever.model.eval()
    run.retriever.save_pretrained(out / "retriever")
    payload = {"metrics": result, "train": run.cfg.model_dump(), "data": config.get("data", {}),
               "model": config.get("model", {}),
               "logit_scale": float(run.model.logit_scale.detach().exp()),
               "pairs": {"train": len(run.sampler.rows), "heldout": len(run.probe.rows)},
               "command": config.get("_command") or "chatir train retriever --config " + str(config.get("_path"))}
    atomic_write_json(out / "metrics.json", payload)
    print(json.dumps(result))
    print(f"wrote {out / 'retriever'}: index the search space with it "
          f"(`chatir index --retriever blip --model {out / 'retriever'} ...`)")
    return 0


__all__ = ["train_visdial", "build_visdial_training", "BlipTextSide", "VisDialDialogSampler", "HeldoutProbe",
           "VisDialModelConfig", "VisDialDataConfig", "VisDialRetrieverConfig", "coco2014_image_id", "query_text"]
