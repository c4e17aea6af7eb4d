"""The dialog-retrieval trainer: contrastive training of a dialog encoder against image features.

One trainer serves the Shapes dual encoder and BLIP's text side on VisDial (ChatIR's recipe: dialogs
cut at a random round 0-10, optional caption masking, symmetric InfoNCE, AdamW with exponential
decay). A model supplies

    image_features(images) -> Tensor[B, d]      unit rows (frozen/precomputed for BLIP)
    dialog_features(dialogs) -> Tensor[B, d]    unit rows
    logit_scale: Parameter                      log temperature

and a data source supplies ``sample(step) -> (images, dialogs)``, where row i of each is a match and
every other row is a negative (hard negatives are the data source's business).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from pydantic import Field
from torch import nn
from torch.nn import functional as F

from ..atomic import atomic_write, atomic_write_json
from ..config import Schema
from ..dialog import Dialog
from ..progress import progress


class RetrieverTrainConfig(Schema):
    """The trainer's settings: the ``train:`` section of a retriever config."""

    steps: int = Field(10_000, ge=1, description="optimiser steps in all (a resumed run continues to this count)")
    batch_size: int = Field(256, ge=2, description="dialogs per step; the other rows of a batch are each row's negatives")
    lr: float = Field(5e-5, gt=0, description="peak AdamW learning rate")
    weight_decay: float = Field(0.01, ge=0, description="AdamW weight decay")
    warmup_steps: int = Field(100, ge=0, description="steps of linear learning-rate warm-up")
    lr_decay: float = Field(0.5, gt=0, le=1, description="the learning rate is multiplied by this every decay_every steps")
    decay_every: int = Field(2_000, ge=1, description="steps per lr_decay factor (applied smoothly)")
    max_logit_scale: float = Field(100.0, gt=1, description="upper bound of the learned inverse temperature")
    grad_clip: float = Field(1.0, gt=0, description="gradient norm clip")
    eval_every: int = Field(500, ge=1, description="steps between evaluations on held-out data")
    checkpoint_every: int = Field(250, ge=1, description="steps between checkpoints (checkpoint.pt, for resuming)")
    seed: int = Field(0, ge=0, description="seed of the batches and of torch")
    threads: int = Field(0, ge=0, description="torch threads (0: leave torch's default)")
    out_dir: str = Field("runs/retriever", description="run folder: checkpoint, TensorBoard logs, history, config")


def contrastive_loss(dialog_vectors: torch.Tensor, image_vectors: torch.Tensor,
                     logit_scale: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Symmetric InfoNCE; returns (loss, dialog->image top-1 accuracy)."""
    logits = logit_scale.exp() * dialog_vectors @ image_vectors.T
    labels = torch.arange(len(logits), device=logits.device)
    loss = (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels)) / 2
    accuracy = (logits.argmax(1) == labels).float().mean()
    return loss, accuracy


def _lr_factor(cfg: RetrieverTrainConfig, step: int) -> float:
    warm = min(1.0, (step + 1) / max(1, cfg.warmup_steps))
    return warm * cfg.lr_decay ** (step / max(1, cfg.decay_every))


def train_retriever(
    model: nn.Module,
    sample: Callable[[int], tuple[Any, Sequence[Dialog]]],
    cfg: RetrieverTrainConfig,
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None,
    trainable: Callable[[nn.Module], list[nn.Parameter]] | None = None,
) -> dict:
    """Train ``model`` in place; resumes from ``cfg.out_dir/checkpoint.pt`` when it exists.

    Writes TensorBoard logs, ``checkpoint.pt`` (model + optimiser + step, atomically) every
    ``checkpoint_every`` steps, and ``config.json``. Returns the last evaluation.
    """
    from torch.utils.tensorboard import SummaryWriter

    out = Path(cfg.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / "config.json", cfg.model_dump())
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    torch.manual_seed(cfg.seed)
    params = trainable(model) if trainable else [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: _lr_factor(cfg, s))
    start, history = 0, []
    checkpoint = out / "checkpoint.pt"
    if checkpoint.exists():
        state = torch.load(checkpoint, weights_only=False)
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start, history = state["step"], state.get("history", [])
        print(f"resuming from {checkpoint} at step {start}")

    def save(step: int) -> None:
        state = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                 "step": step, "history": history}
        atomic_write(checkpoint, lambda tmp: torch.save(state, tmp))

    writer = SummaryWriter(str(out / "tb"))
    model.train()
    last_eval: dict = history[-1] if history else {}
    bar = progress(range(start, cfg.steps), initial=start, total=cfg.steps, desc="retriever")
    t0 = time.time()
    completed = start
    try:
        for step in bar:
            images, dialogs = sample(step)
            loss, accuracy = contrastive_loss(model.dialog_features(dialogs), model.image_features(images), model.logit_scale)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                model.logit_scale.clamp_(0, math.log(cfg.max_logit_scale))
            if step % 25 == 0:
                writer.add_scalar("train/loss", loss.item(), step)
                writer.add_scalar("train/top1", accuracy.item(), step)
                writer.add_scalar("train/lr", scheduler.get_last_lr()[0], step)
                bar.set_postfix(loss=f"{loss.item():.3f}", top1=f"{accuracy.item():.2f}")
            done = completed = step + 1
            if evaluate and (done % cfg.eval_every == 0 or done == cfg.steps):
                model.eval()
                last_eval = {"step": done, "seconds": round(time.time() - t0, 1), **evaluate(model)}
                model.train()
                history.append(last_eval)
                for key, value in last_eval.items():
                    if key not in ("step", "seconds"):
                        writer.add_scalar(f"eval/{key}", value, done)
                bar.write(json.dumps(last_eval))
            if done % cfg.checkpoint_every == 0 or done == cfg.steps:
                save(done)
    except KeyboardInterrupt:
        save(completed)
        writer.close()
        print(f"\ninterrupted after step {completed}; rerun the same command to resume from {checkpoint}")
        raise
    writer.close()
    model.eval()
    atomic_write_json(out / "history.json", history)
    return last_eval
