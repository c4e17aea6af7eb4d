"""A language-model questioner: any HF causal LM with a chat template asks the questions.

The dialog is a chat: the caption is the first user message, each question an assistant message and
each answer the next user message. The GRPO trainer (``chatir_env.train.grpo``) and this questioner
build prompts with the same ``dialog_messages``, so a model trained there asks here exactly as it
learned to.

    q = LMQuestioner("runs/grpo_shapes/final")           # a saved model dir (model + tokenizer)
    record = play_episodes(world, q)                      # batched: one generate() per round

A model dir written by the trainer holds ``chatir_questioner.json`` (system prompt, decoding
settings used in training); explicit arguments override it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import torch

QUESTIONER_META = "chatir_questioner.json"
SHIPPED = Path(__file__).resolve().parent / "weights"  # small trained questioners (docs/grpo.md)


def dialog_messages(caption: str, turns: Sequence[tuple[str, str]] = (), system_prompt: str | None = None) -> list[dict]:
    """The chat an LM questioner sees: [system], user caption, then assistant question / user answer turns."""
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": caption})
    for question, answer in turns:
        messages.append({"role": "assistant", "content": question})
        messages.append({"role": "user", "content": answer})
    return messages


def observation_turns(observation: dict) -> list[tuple[str, str]]:
    r = int(observation["round"])
    return list(zip(observation["questions"][:r], observation["answers"][:r]))


def chat_ids(tokenizer, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
    """Token ids of a chat rendered with the tokenizer's chat template (a flat list of ints)."""
    out = tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=True,
                                        return_dict=False)
    if isinstance(out, dict) or hasattr(out, "keys"):
        out = out["input_ids"]
    if out and isinstance(out[0], list):
        out = out[0]
    return [int(i) for i in out]


def eos_ids(tokenizer, model=None) -> list[int]:
    ids = set()
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    gen = getattr(model, "generation_config", None)
    extra = getattr(gen, "eos_token_id", None) if gen is not None else None
    if isinstance(extra, int):
        ids.add(extra)
    elif extra:
        ids.update(int(i) for i in extra)
    return sorted(ids)


@torch.no_grad()
def generate_batch(
    model,
    tokenizer,
    contexts: Sequence[Sequence[int]],
    max_new_tokens: int = 32,
    do_sample: bool = True,
    temperature: float = 1.0,
    top_k: int = 0,
    top_p: float = 1.0,
    batch_size: int = 256,
) -> tuple[list[list[int]], list[list[float]]]:
    """Continue each token context once: the new ids and their log-probabilities.

    The ids are cut after the first end-of-turn, which is kept; each log-probability is under the sampling
    distribution (temperature applied).
    """
    from transformers import GenerationConfig

    eos = eos_ids(tokenizer, model)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos[0]
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    config = GenerationConfig(
        max_new_tokens=max_new_tokens, do_sample=do_sample, pad_token_id=pad, eos_token_id=eos,
        bos_token_id=tokenizer.bos_token_id, output_scores=True, return_dict_in_generate=True,
        **({"temperature": temperature, "top_k": top_k or None, "top_p": top_p} if do_sample else {}),
    )
    new_ids: list[list[int]] = []
    logprobs: list[list[float]] = []
    try:
        for start in range(0, len(contexts), batch_size):
            chunk = [list(c) for c in contexts[start : start + batch_size]]
            width = max(len(c) for c in chunk)
            input_ids = torch.full((len(chunk), width), pad, dtype=torch.long)
            attention = torch.zeros((len(chunk), width), dtype=torch.long)
            for i, c in enumerate(chunk):  # left padding
                input_ids[i, width - len(c) :] = torch.tensor(c, dtype=torch.long)
                attention[i, width - len(c) :] = 1
            out = model.generate(
                input_ids=input_ids.to(device), attention_mask=attention.to(device), generation_config=config,
            )
            seqs = out.sequences[:, width:].cpu()
            scores = torch.stack(out.scores, dim=1).float().log_softmax(-1).cpu() if out.scores else None
            for i in range(len(chunk)):
                ids = seqs[i].tolist()
                cut = len(ids)
                for pos, tok in enumerate(ids):
                    if tok in eos:
                        cut = pos + 1
                        break
                ids = ids[:cut]
                new_ids.append(ids)
                if scores is None:
                    logprobs.append([0.0] * len(ids))
                else:
                    lp = scores[i, torch.arange(len(ids)), torch.tensor(ids, dtype=torch.long)]
                    logprobs.append([float(x) if torch.isfinite(x) else 0.0 for x in lp])
    finally:
        if was_training:
            model.train()
    return new_ids, logprobs


def decode_question(tokenizer, ids: Sequence[int]) -> str:
    """The question text of generated ids: special tokens dropped, first line, stripped."""
    text = tokenizer.decode(list(ids), skip_special_tokens=True)
    text = text.strip()
    return text.splitlines()[0].strip() if text else ""


class LMQuestioner:
    """A causal LM (a saved dir or a loaded model) as a batched ChatIR questioner.

    Args:
        model_path: a directory with the model and its tokenizer, the name of a shipped one
            ("shapes_lm_sft", "shapes_lm_grpo"), or a loaded ``PreTrainedModel`` (then pass ``tokenizer``).
        tokenizer: overrides the tokenizer saved with the model.
        system_prompt: the system message (default: the one in ``chatir_questioner.json``, else none).
        do_sample / temperature / top_k / top_p: decoding; sampling at temperature 1 is the policy
            GRPO trained. ``seed`` makes sampled runs reproducible without touching the global RNG.
        max_new_tokens: the longest question, in tokens.
        batch_size: episodes per ``generate`` call.
        device: where the model runs ("cpu", "cuda"); default: cuda when available.

    ``ask`` returns the decoded text for each episode. Text the env refuses (empty) is counted by the
    eval runner as an invalid question and the round is skipped for that episode.
    """

    def __init__(self, model_path: Any, tokenizer=None, system_prompt: str | None = None, do_sample: bool = True,
                 temperature: float = 1.0, top_k: int = 0, top_p: float = 1.0, max_new_tokens: int | None = None,
                 batch_size: int = 256, seed: int = 0, device: str | None = None, dtype: str | None = None):
        from transformers import AutoModelForCausalLM, AutoTokenizer

        meta: dict = {}
        if isinstance(model_path, (str, Path)):
            path = Path(model_path)
            if not path.exists() and (SHIPPED / str(model_path)).is_dir():
                path = SHIPPED / str(model_path)  # a shipped model by name, e.g. "shapes_lm_grpo"
            if not path.exists():
                shipped = sorted(d.name for d in SHIPPED.iterdir()) if SHIPPED.is_dir() else []
                raise FileNotFoundError(
                    f"LMQuestioner: model dir {path} not found (shipped models: {', '.join(shipped) or 'none'})")
            meta_file = path / QUESTIONER_META
            if meta_file.exists():
                meta = json.loads(meta_file.read_text())
            kwargs = {"dtype": getattr(torch, dtype)} if dtype else {"dtype": torch.float32}
            self.model = AutoModelForCausalLM.from_pretrained(str(path), **kwargs)
            self.tokenizer = tokenizer or AutoTokenizer.from_pretrained(str(path))
        else:
            if tokenizer is None:
                raise ValueError("LMQuestioner: pass tokenizer= with a loaded model")
            self.model, self.tokenizer = model_path, tokenizer
        if getattr(self.tokenizer, "chat_template", None) is None:
            raise ValueError("LMQuestioner needs a tokenizer with a chat template")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        if isinstance(model_path, (str, Path)):
            self.model.to(device).eval()  # a model passed in keeps its mode: generate_batch restores it
        self.system_prompt = system_prompt if system_prompt is not None else meta.get("system_prompt")
        self.max_new_tokens = int(max_new_tokens or meta.get("max_question_tokens", 32))
        self.do_sample, self.temperature, self.top_k, self.top_p = do_sample, temperature, top_k, top_p
        self.batch_size, self.seed = batch_size, seed
        self._calls = 0
        self._captions: list[str] = []

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        self._captions = list(captions)

    def ask(self, observations: Sequence[dict]) -> list[str | None]:
        contexts = [
            chat_ids(self.tokenizer, dialog_messages(obs["caption"], observation_turns(obs), self.system_prompt))
            for obs in observations
        ]
        devices = [self.model.device] if self.model.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(self.seed * 1_000_003 + self._calls)
            self._calls += 1
            ids, _ = generate_batch(self.model, self.tokenizer, contexts, self.max_new_tokens, self.do_sample,
                                    self.temperature, self.top_k, self.top_p, self.batch_size)
        return [decode_question(self.tokenizer, i) for i in ids]
