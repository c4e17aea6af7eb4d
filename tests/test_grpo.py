"""GRPO questioner: a real multi-turn rollout, the env mask, the loss mask, penalties, LMQuestioner.

Everything runs on tiny random models built from configs (no hub) and a 300-scene Shapes world.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch

pytest.importorskip("trl")

from chatir_env.agents import make_questioner
from chatir_env.agents.lm import LMQuestioner, chat_ids, dialog_messages
from chatir_env.eval.report import summarize_record
from chatir_env.eval.runner import play_episodes
from chatir_env.train import grpo, grpo_rollout
from chatir_env.train.grpo import EnvConfig, EpisodeRollout
from chatir_env.train.shapes_lm import build_shapes_lm, build_shapes_tokenizer, shapes_sft_examples
from chatir_env.worlds import build_world
from chatir_env.worlds.shapes_language import ANSWERS, DONT_KNOW, POOL_TEXTS

os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")
torch.set_num_threads(1)
TINY = {"hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "seed": 0}
WORLD = {"split": "benchmark", "corpus_size": 300, "num_targets": 32}


@pytest.fixture(scope="module")
def world():
    return build_world("shapes_oracle", **WORLD)


@pytest.fixture(scope="module")
def tok():
    return build_shapes_tokenizer()


@pytest.fixture()
def model(tok):
    return build_shapes_lm(tok, **TINY)


@pytest.fixture(scope="module")
def warm_state(tok):
    """A few teacher-forced steps on pool questions, so that sampled episodes differ in reward (a
    uniformly random model asks nothing parsable, every return in a group ties and GRPO's advantage is 0)."""
    model = build_shapes_lm(tok, **TINY)
    rows = shapes_sft_examples(256, max_rounds=2, corpus_size=300, seed=1)
    seqs = [chat_ids(tok, r["prompt"] + r["completion"], add_generation_prompt=False) for r in rows]
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = np.random.default_rng(0)
    for _ in range(60):
        batch = [seqs[i] for i in gen.integers(len(seqs), size=16)]
        width = max(map(len, batch))
        ids = torch.full((len(batch), width), tok.pad_token_id)
        for i, b in enumerate(batch):
            ids[i, : len(b)] = torch.tensor(b)
        labels = ids.masked_fill(ids == tok.pad_token_id, -100)
        loss = model(input_ids=ids, attention_mask=(labels != -100).long(), labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


@pytest.fixture()
def warm_model(tok, warm_state):
    model = build_shapes_lm(tok, **TINY)
    model.load_state_dict(warm_state)
    return model


def _runs(mask):
    """(value, start, end) runs of a 0/1 list."""
    out, start = [], 0
    for i in range(1, len(mask) + 1):
        if i == len(mask) or mask[i] != mask[start]:
            out.append((mask[start], start, i))
            start = i
    return out


def test_tokenizer_covers_the_shapes_language(tok):
    unk = tok.unk_token_id
    for text in POOL_TEXTS:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert unk not in ids and tok.decode(ids) == text
    for text in ANSWERS:
        assert unk not in tok(text, add_special_tokens=False)["input_ids"]
    for row in shapes_sft_examples(50, corpus_size=300):
        assert unk not in chat_ids(tok, row["prompt"] + row["completion"], add_generation_prompt=False)


def test_rollout_env_mask_zeros_exactly_the_answer_tokens(world, tok, model):
    env = EnvConfig(max_rounds=3, max_question_tokens=8)
    rollout = EpisodeRollout(world, tok, env)
    targets = list(world.targets[:6])
    torch.manual_seed(0)
    out = rollout.play(model, targets)
    eos = tok.eos_token_id
    for i in range(len(targets)):
        ids, mask, lps = out["completion_ids"][i], out["env_mask"][i], out["logprobs"][i]
        assert len(ids) == len(mask) == len(lps)
        # Rebuild the expected env segments: the end-of-turn the env adds to a cut-off question, then the
        # answer's chat turn (user turn + next assistant header), for every round but the last.
        runs = _runs(mask)
        model_runs = [r for r in runs if r[0] == 1]
        env_runs = [ids[s:e] for v, s, e in runs if v == 0]
        answers = out["answers"][i]
        assert len(answers) == env.max_rounds and len(model_runs) >= 1
        expected_env = []
        position = 0
        for r in range(env.max_rounds):
            # the model's sampled question tokens (mask 1) end at its own eos or are cut at max_question_tokens
            v, s, e = runs[position]
            if v == 1:
                position += 1
                segment = ids[s:e]
                assert len(segment) <= env.max_question_tokens
                closed = segment[-1] == eos
            else:
                closed = False  # an empty generation cannot happen with max_new_tokens >= 1, but stay exact
            env_tokens = ([] if closed else [eos]) + (rollout.answer_suffix_ids(answers[r]) if r < env.max_rounds - 1 else [])
            if env_tokens:
                assert ids[runs[position][1]:runs[position][2]] == env_tokens
                expected_env.append(env_tokens)
                position += 1
        assert position == len(runs)
        assert env_runs == expected_env
        # the answer text itself sits inside the masked tokens and nowhere in the sampled ones
        for r, a in enumerate(answers[:-1]):
            assert tok.decode(rollout.answer_suffix_ids(a), skip_special_tokens=True).strip() == a
        assert all(lp == 0.0 for lp, m in zip(lps, mask) if m == 0)
        assert all(lp <= 0.0 for lp in lps)


def test_rollout_penalises_empty_and_non_questions_without_crashing(world, tok, monkeypatch):
    eos = tok.eos_token_id
    enc = lambda text: tok(text, add_special_tokens=False)["input_ids"]
    script = [
        [eos],                                   # empty text
        enc("red circle") + [eos],               # not a question
        enc("what is in the center?") + [eos],   # a pool question
        enc("is is is is"),                      # cut off, no eos, not a question
        enc("how many blue squares?") + [eos],   # a question outside the pool: the oracle says "i don't know"
    ]

    def fake_generate(model, tokenizer, contexts, *args, **kwargs):
        turns = [list(script[i % len(script)]) for i in range(len(contexts))]
        return turns, [[-0.5] * len(t) for t in turns]

    monkeypatch.setattr(grpo_rollout, "generate_batch", fake_generate)
    env = EnvConfig(max_rounds=2, invalid_question_penalty=0.75)
    rollout = EpisodeRollout(world, tok, env)
    targets = list(world.targets[:5])
    out = rollout.play(None, targets)
    assert out["invalid_turns"] == [2, 2, 0, 2, 0]
    np.testing.assert_allclose(out["episode_return"], np.array(out["env_return"]) - 0.75 * np.array(out["invalid_turns"]))
    for i in (0, 1, 3):
        assert out["env_return"][i] == 0.0 and out["answers"][i] == [DONT_KNOW, DONT_KNOW]
    assert out["answers"][4] == [DONT_KNOW, DONT_KNOW] and out["invalid_turns"][4] == 0
    assert out["answers"][2][0] not in (DONT_KNOW,)
    # the cut-off generation was closed by an env-inserted (masked) eos
    ids, mask = out["completion_ids"][3], out["env_mask"][3]
    n = len(script[3])
    assert ids[n] == eos and mask[:n] == [1] * n and mask[n] == 0
    # the penalty is configurable, and reaches TRL through the episode_return reward function
    assert grpo.episode_return(None, None, episode_return=out["episode_return"]) == out["episode_return"]


def _script_rounds(monkeypatch, tok, script: dict[int, list[str]]) -> None:
    """The rollout's generations replaced by ``script[episode][round]`` texts, each closed by eos."""
    calls = {"round": 0}

    def fake_generate(model, tokenizer, contexts, *args, **kwargs):
        r = calls["round"]
        calls["round"] += 1
        turns = [tok(script[i][r].strip(), add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
                 for i in range(len(contexts))]
        return turns, [[-0.5] * len(t) for t in turns]

    monkeypatch.setattr(grpo_rollout, "generate_batch", fake_generate)


def test_rollout_penalises_repeated_questions(world, tok, monkeypatch):
    # episode 0 asks the same question three times, once in other case; episode 1 never repeats
    _script_rounds(monkeypatch, tok, {0: ["what is in the center?", "What is in the center? ", "what is in the center?"],
                                      1: ["what is in the center?", "what is the background?", "how many objects are there?"]})
    rollout = EpisodeRollout(world, tok, EnvConfig(max_rounds=3, repeat_penalty=0.5))
    out = rollout.play(None, list(world.targets[:2]))
    assert out["repeated_turns"] == [2, 0]
    np.testing.assert_allclose(out["episode_return"], np.array(out["env_return"]) - [1.0, 0.0])
    assert grpo.repeated_turns(None, None, repeated_turns=out["repeated_turns"]) == [2.0, 0.0]


def test_rollout_prices_questions_the_answerer_cannot_answer(world, tok, monkeypatch):
    # episode 0: two out-of-pool questions ("i don't know") and one pool question; episode 1: a refused
    # non-question (the invalid penalty's, not this one's) and two pool questions
    _script_rounds(monkeypatch, tok, {0: ["how many blue squares?", "what is in the center?", "is it sunny?"],
                                      1: ["red circle", "what is the background?", "what is in the center?"]})
    env = EnvConfig(max_rounds=3, unanswered_penalty=0.25, invalid_question_penalty=1.0)
    out = EpisodeRollout(world, tok, env).play(None, list(world.targets[:2]))
    assert out["unanswered_turns"] == [2, 0] and out["invalid_turns"] == [0, 1]
    np.testing.assert_allclose(out["episode_return"], np.array(out["env_return"]) - [0.5, 1.0])


def _tiny_grpo(world, tok, model, tmp_path, steps=1):
    from datasets import Dataset
    from trl import GRPOConfig, GRPOTrainer

    env = EnvConfig(max_rounds=3, max_question_tokens=8)
    rollout = EpisodeRollout(world, tok, env)
    calls = []

    def counted(prompts, trainer):
        calls.append(list(prompts))
        return rollout(prompts, trainer)

    args = GRPOConfig(output_dir=str(tmp_path / "out"), max_steps=steps, per_device_train_batch_size=4,
                      num_generations=2, learning_rate=1e-3, logging_steps=1, report_to=[], bf16=False,
                      gradient_checkpointing=False, reward_weights=grpo.REWARD_WEIGHTS, save_strategy="no",
                      max_completion_length=64, seed=0)
    trainer = GRPOTrainer(model=model, reward_funcs=grpo.REWARD_FUNCS, args=args, processing_class=tok,
                          train_dataset=Dataset.from_dict({"prompt": list(world.targets)}), rollout_func=counted)
    return trainer, calls


def test_one_grpo_step_end_to_end(world, tok, warm_model, tmp_path):
    model = warm_model
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainer, calls = _tiny_grpo(world, tok, model, tmp_path)
    trainer.train()
    assert len(calls) == 1 and len(calls[0]) == 4
    assert calls[0][0] == calls[0][1] and calls[0][0] in world.targets  # groups of num_generations share a target
    log = [h for h in trainer.state.log_history if "reward" in h]
    assert log and np.isfinite(log[0]["loss"]) and "rewards/hit_at_10/mean" in log[0]
    assert log[0]["reward_std"] > 0
    changed = any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert changed


def test_loss_ignores_answer_tokens(world, tok, warm_model, tmp_path):
    trainer, _ = _tiny_grpo(world, tok, warm_model, tmp_path)
    torch.manual_seed(1)
    batch = next(iter(trainer.get_train_dataloader()))
    trainer.model.train()
    trainer.current_gradient_accumulation_steps = 1  # set by Trainer.train(); we call compute_loss directly
    inputs = trainer._generate_and_score_completions(batch)
    tool_mask, completion_mask = inputs["tool_mask"], inputs["completion_mask"]
    assert (tool_mask == 0).any() and (tool_mask == 1).any()
    # the advantages must not all vanish, or every gradient would be zero
    inputs["advantages"] = torch.tensor([1.0, -1.0, 0.5, -0.5])[: len(inputs["advantages"])]

    # TRL scores tokens with a fused LM head (no lm_head module call), so hook the final norm: its output
    # at position p feeds only the logits that predict token p + 1 (no attention follows it).
    prompt_len = inputs["prompt_ids"].shape[1]
    env_positions = (tool_mask == 0) & (completion_mask == 1)
    model_positions = (tool_mask == 1) & (completion_mask == 1)
    width = tool_mask.shape[1]
    captured = []
    noise = {"on": False}

    def predicting(hidden):  # hidden states that predict completion tokens 0..C-1
        return hidden[:, prompt_len - 1 : prompt_len - 1 + width]

    def hook(module, args, output):
        if noise["on"]:  # scramble what predicts the env (answer) tokens, i.e. their logits
            bump = torch.zeros_like(output)
            predicting(bump)[env_positions] = 10 * torch.randn_like(predicting(bump)[env_positions])
            output = output + bump
        if output.requires_grad:
            output.retain_grad()
        captured.append(output)
        return output

    handle = trainer.model.model.norm.register_forward_hook(hook)
    try:
        loss = trainer.compute_loss(trainer.model, inputs)
        loss.backward()
        assert len(captured) == 1 and captured[0].shape[1] == prompt_len + width
        grad = predicting(captured[0].grad)
        assert grad[env_positions].abs().max().item() == 0.0
        assert grad[model_positions].abs().max().item() > 0.0
        trainer.model.zero_grad()
        # On-policy with beta = 0 the loss *value* is -mean(advantage) whatever the logits (only its gradient
        # moves), so compare values against fixed behaviour log-probs, where the ratio depends on the logits.
        inputs["old_per_token_logps"] = torch.full(tool_mask.shape, -1.0)
        with torch.no_grad():
            base = trainer.compute_loss(trainer.model, inputs)
            noise["on"] = True
            scrambled_env = trainer.compute_loss(trainer.model, inputs)
            env_positions, model_positions = model_positions, env_positions  # control: scramble the questions
            scrambled_questions = trainer.compute_loss(trainer.model, inputs)
        torch.testing.assert_close(scrambled_env, base)
        assert not torch.allclose(scrambled_questions, base)
    finally:
        handle.remove()


def test_lm_questioner_through_the_eval_runner(world, tok, model, tmp_path):
    path = tmp_path / "questioner"
    grpo.save_questioner(model, tok, path, {"max_question_tokens": 8, "system_prompt": None})
    q = LMQuestioner(str(path), seed=3, batch_size=16)
    targets = list(world.targets[:12])
    record = play_episodes(world, q, targets=targets, max_rounds=3, batch_size=8, progress=False)
    summary = summarize_record(record, bootstrap_samples=20)
    assert record.ranks.shape == (4, 12) and len(summary["hits@10"]) == 4
    asked = [turn for d in record.dialogs for turn in d.turns]
    assert len(asked) + record.invalid_questions == 12 * 3
    # the same seed replays the same questions; the short name works too
    again = play_episodes(world, make_questioner("lm", model_path=str(path), seed=3, batch_size=16), targets=targets,
                          max_rounds=3, batch_size=8, progress=False)
    assert [d.turns for d in again.dialogs] == [d.turns for d in record.dialogs]
    # prompts are the chat of the dialog so far
    ids = chat_ids(tok, dialog_messages("a red circle", [("what is in the center?", "nothing")]))
    assert tok.convert_ids_to_tokens(ids)[-1] == "<assistant>"


def test_main_runs_a_grpo_step_saves_and_resumes(tmp_path):
    config = {
        "_path": "test", "stage": "grpo", "threads": 1, "out_dir": str(tmp_path / "run"),
        "model": {"build": "shapes_tiny", "config": TINY},
        "env": {"world_kwargs": WORLD, "max_rounds": 2, "max_question_tokens": 8},
        "grpo": {"per_device_train_batch_size": 4, "num_generations": 2, "logging_steps": 1, "save_steps": 1,
                 "report_to": []},
        "eval": {"world_kwargs": WORLD, "num_targets": 8, "max_rounds": 2, "bootstrap_samples": 20},
    }
    assert grpo.main(config, steps=1) == 0
    assert (tmp_path / "run" / "checkpoint-1").is_dir() and (tmp_path / "run" / "final" / "chatir_questioner.json").exists()
    assert grpo.main(config, steps=2) == 0  # resumes from checkpoint-1
    history = json.loads((tmp_path / "run" / "log_history.json").read_text())
    assert max(h.get("step", 0) for h in history) == 2
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["steps"] == 2 and "GRPO" in results["results"]
    # the command that ran is recorded beside the outputs (rebuilt here: the config did not come from the CLI)
    assert results["config"]["command"] == "chatir train grpo --config test --steps 2"
    assert results["config"]["env"]["max_rounds"] == 2 and results["config"]["env"]["max_question_chars"] == 300
    meta = json.loads((tmp_path / "run" / "final" / "chatir_questioner.json").read_text())
    assert meta["command"] == "chatir train grpo --config test --steps 2"


def test_bad_config_fields_are_named(tmp_path):
    from chatir_env.config import ConfigError

    with pytest.raises(ConfigError, match=r"^x: env.rounds: unknown key; allowed: world, .*did you mean 'max_rounds'\?$"):
        grpo.main({"_path": "x", "model": {"build": "shapes_tiny"}, "env": {"rounds": 3}}, out_dir=str(tmp_path))
    with pytest.raises(ConfigError, match=r"^x: stage: unknown stage 'ppo'; valid: sft, grpo$"):
        grpo.main({"_path": "x", "stage": "ppo"})
    # nothing was built: the config is checked before the model, the world or the output folder
    assert not any(tmp_path.iterdir())


def test_lora_option_trains_an_adapter_and_exports_a_merged_model(tmp_path, tok, warm_model):
    pytest.importorskip("peft")
    from transformers import AutoModelForCausalLM

    start = tmp_path / "warm"
    warm_model.save_pretrained(start)
    tok.save_pretrained(start)
    config = {
        "_path": "test", "stage": "grpo", "out_dir": str(tmp_path / "lora"),
        "model": {"path": str(start)},
        "lora": {"r": 4, "lora_alpha": 8, "target_modules": ["q_proj", "v_proj"]},
        "env": {"world_kwargs": WORLD, "max_rounds": 2, "max_question_tokens": 8},
        "grpo": {"per_device_train_batch_size": 8, "num_generations": 4, "learning_rate": 0.05, "save_strategy": "no",
                 "report_to": []},
        "eval": {"enabled": False},
    }
    assert grpo.main(config, steps=2) == 0
    final = tmp_path / "lora" / "final"
    assert not (final / "adapter_config.json").exists()  # merged: LMQuestioner loads it as a plain model
    before = warm_model.state_dict()
    after = AutoModelForCausalLM.from_pretrained(final).state_dict()
    assert set(after) == set(before)
    # The adapter sits on q_proj and v_proj only: merged, exactly those weights moved and nothing else did.
    changed = {name for name in before if not torch.equal(before[name], after[name])}
    targeted = {name for name in before if name.endswith(("q_proj.weight", "v_proj.weight"))}
    assert changed == targeted, sorted(changed ^ targeted)
    # a rank-4 update: each merged difference has rank at most r = 4
    for name in targeted:
        assert torch.linalg.matrix_rank(after[name] - before[name], atol=1e-6) <= 4
    q = LMQuestioner(str(final))
    q.reset(["a red circle"])
    assert isinstance(q.ask([{"caption": "a red circle", "questions": ("",) * 2, "answers": ("",) * 2, "round": 0}])[0], str)


def test_rollout_with_a_bpe_chatml_tokenizer(world):
    """Any causal LM with a chat template: a byte-level BPE tokenizer and a ChatML template that puts a
    newline after each end-of-turn (as Qwen's does): the env segments are the template's user turns."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    core = Tokenizer(models.BPE())
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    core.decoder = decoders.ByteLevel()
    corpus = list(POOL_TEXTS) + list(ANSWERS) + [world.captions[t] for t in world.targets] + ["user assistant system"]
    core.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=400, special_tokens=special,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = PreTrainedTokenizerFast(tokenizer_object=core, eos_token="<|im_end|>", pad_token="<|endoftext|>")
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=1,
                                         num_attention_heads=2, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id))
    env = EnvConfig(max_rounds=3, max_question_tokens=6, system_prompt="Find the image.")
    rollout = EpisodeRollout(world, tok, env)
    torch.manual_seed(0)
    out = rollout.play(model, list(world.targets[:3]))
    assert tok.decode(out["prompt_ids"][0]).startswith("<|im_start|>system\nFind the image.<|im_end|>\n<|im_start|>user\n")
    for i in range(3):
        ids, mask = out["completion_ids"][i], out["env_mask"][i]
        env_text = [tok.decode(ids[s:e]) for v, s, e in _runs(mask) if v == 0]
        answers = out["answers"][i]
        turns = [t for t in env_text if "<|im_start|>user" in t]
        assert len(turns) == env.max_rounds - 1
        for a, t in zip(answers, turns):
            # a cut-off question is closed by a masked <|im_end|>; then the template's newline and user turn
            closing = "<|im_end|>" if t.startswith("<|im_end|>") else ""
            assert t == closing + f"\n<|im_start|>user\n{a}<|im_end|>\n<|im_start|>assistant\n"
        assert all(t == "<|im_end|>" for t in env_text if t not in turns)  # the last round's closing only


def test_shipped_questioners_load_by_name():
    from chatir_env.agents.lm import SHIPPED
    from chatir_env.worlds.shapes_language import parse_question

    if not (SHIPPED / "shapes_lm_grpo").is_dir():
        pytest.skip("no shipped LM questioners in this checkout")
    q = LMQuestioner("shapes_lm_grpo", seed=0)
    obs = {"caption": "a small red circle on grass", "questions": ("",) * 5, "answers": ("",) * 5, "round": 0}
    asked = q.ask([obs] * 8)
    assert sum(parse_question(a) is not None for a in asked) >= 6
    with pytest.raises(FileNotFoundError, match="shipped models"):
        LMQuestioner("no_such_model")


def test_the_warm_start_is_an_explicit_sft_step_before_grpo(tmp_path):
    import yaml

    sft_dir = tmp_path / "sft"
    sft_config = {"stage": "sft", "threads": 1, "out_dir": str(sft_dir), "model": {"build": "shapes_tiny", "config": TINY},
                  "data": {"num_examples": 16, "max_rounds": 2, "corpus_size": 300},
                  "env": {"max_question_tokens": 8},
                  "sft": {"max_steps": 1, "per_device_train_batch_size": 8, "save_strategy": "no", "report_to": []},
                  "eval": {"enabled": False}}
    sft_path = tmp_path / "sft.yaml"
    sft_path.write_text(yaml.safe_dump(sft_config))
    model = {"path": str(sft_dir / "final"), "warm_start": str(sft_path)}
    grpo.run_warm_start(model, "test")  # the SFT stage runs because model.path is missing
    meta = json.loads((sft_dir / "final" / "chatir_questioner.json").read_text())
    assert meta["stage"] == "sft"
    stamp = (sft_dir / "final" / "chatir_questioner.json").stat().st_mtime_ns
    grpo.run_warm_start(model, "test")  # present now: nothing runs again
    assert (sft_dir / "final" / "chatir_questioner.json").stat().st_mtime_ns == stamp
    from chatir_env.config import ConfigError

    sft_path.write_text(yaml.safe_dump({**sft_config, "stage": "grpo"}))
    with pytest.raises(ConfigError, match="must be an SFT config"):
        grpo.run_warm_start({"path": str(tmp_path / "missing"), "warm_start": str(sft_path)}, "test")
