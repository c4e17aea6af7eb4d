import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from gymnasium import spaces
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy

from chatir_env.agents.gain_policy import GainBiasPolicy
from chatir_env.agents.policy import PolicyQuestioner, load_policy
from chatir_env.eval.runner import play_episodes
from chatir_env.worlds import build_world

ROOT = Path(__file__).resolve().parents[1]
SPACE = spaces.Dict({"gain": spaces.Box(0.0, 10.0, (3,), np.float32), "round": spaces.Box(0.0, 1.0, (2,), np.float32)})
ACTIONS = spaces.Discrete(3)


def make_policy(**kwargs) -> GainBiasPolicy:
    return GainBiasPolicy(SPACE, ACTIONS, lambda _: 1e-3, net_arch=[4], **kwargs)


def observation(gain) -> dict:
    return {"gain": torch.tensor([gain], dtype=torch.float32), "round": torch.tensor([[1.0, 0.0]])}


def test_logits_are_the_heads_plus_the_scaled_gain_and_masks_hold():
    policy = make_policy()
    with torch.no_grad():
        policy.action_net.weight.zero_()
        policy.action_net.bias.copy_(torch.tensor([5.0, 0.0, 0.0]))
    obs = observation([0.1, 0.3, 0.2])
    # logits = [5, 0, 0] + 20 * [0.1, 0.3, 0.2] = [7, 6, 4]
    probs = policy.get_distribution(obs).distribution.probs[0]
    expected = np.exp([7.0, 6.0, 4.0]) / np.exp([7.0, 6.0, 4.0]).sum()
    np.testing.assert_allclose(probs.detach().numpy(), expected, rtol=1e-5)
    actions, _, _ = policy(obs, deterministic=True)
    assert actions.tolist() == [0]
    # question 0 masked: of [6, 4] the first (action 1), with probability e^6 / (e^6 + e^4)
    mask = np.array([[False, True, True]])
    actions, _, log_prob = policy(obs, deterministic=True, action_masks=mask)
    assert actions.tolist() == [1]
    assert log_prob.item() == pytest.approx(math.log(1 / (1 + math.exp(-2))), rel=1e-5)
    _, log_prob, entropy = policy.evaluate_actions(obs, torch.tensor([2]), action_masks=mask)
    assert log_prob.item() == pytest.approx(math.log(1 / (1 + math.exp(2))), rel=1e-5)
    p = 1 / (1 + math.exp(-2))
    assert entropy.item() == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)), rel=1e-5)
    assert policy.predict({k: v.numpy()[0] for k, v in obs.items()}, deterministic=True,
                          action_masks=mask[0])[0].item() == 1


def test_the_untrained_policy_asks_the_highest_gain_question_and_the_scale_learns():
    policy = make_policy(gain_scale=50.0)
    obs = observation([0.2, 0.25, 0.9])
    assert policy(obs, deterministic=True)[0].tolist() == [2]  # the head's tiny initial logits do not outvote 50 * 0.65
    assert policy.gain_scale.item() == 50.0
    assert any(p is policy.gain_scale for group in policy.optimizer.param_groups for p in group["params"])
    _, log_prob, _ = policy.evaluate_actions(obs, torch.tensor([0]))
    policy.optimizer.zero_grad()
    (-log_prob.sum()).backward()  # make the lowest-gain question likelier: the scale must shrink
    policy.optimizer.step()
    assert policy.gain_scale.item() < 50.0


def test_a_space_without_a_gain_per_action_is_refused():
    with pytest.raises(ValueError, match=r"'gain' of shape \(4,\).*got \(3,\)"):
        GainBiasPolicy(SPACE, spaces.Discrete(4), lambda _: 1e-3)
    with pytest.raises(ValueError, match="got None"):
        GainBiasPolicy(spaces.Dict({"round": SPACE["round"]}), ACTIONS, lambda _: 1e-3)


def test_load_policy_round_trips_both_classes(tmp_path):
    gain = make_policy(gain_scale=7.5)
    with torch.no_grad():
        gain.gain_scale.fill_(3.25)  # a trained value, not the initial one
    gain.save(tmp_path / "gain.pt")
    loaded = load_policy(tmp_path / "gain.pt")
    assert type(loaded) is GainBiasPolicy and loaded.gain_scale.item() == 3.25 and loaded.gain_scale_init == 7.5
    obs = observation([0.1, 0.3, 0.2])
    np.testing.assert_allclose(loaded.get_distribution(obs).distribution.probs.detach().numpy(),
                               gain.get_distribution(obs).distribution.probs.detach().numpy(), rtol=1e-6)
    plain = MaskableMultiInputActorCriticPolicy(SPACE, ACTIONS, lambda _: 1e-3, net_arch=[4])
    plain.save(tmp_path / "plain.pt")
    assert type(load_policy(tmp_path / "plain.pt")) is MaskableMultiInputActorCriticPolicy


@pytest.mark.parametrize("name", ["ppo_shapes.pt", "ppo_shapes_oracle.pt"])
def test_the_shipped_mlp_policies_still_load_as_before(name):
    assert type(load_policy(ROOT / "agents" / "policies" / name)) is MaskableMultiInputActorCriticPolicy


def test_an_unknown_policy_name_is_named():
    from chatir_env.config import ConfigError, validate
    from chatir_env.train.ppo import PPOConfig

    with pytest.raises(ConfigError, match=r"config: policy: Input should be 'MultiInputPolicy' or 'gain_bias' \(got 'mlp'\)"):
        validate(PPOConfig, {"policy": "mlp"})


def test_a_gain_bias_config_trains_and_its_policy_is_a_questioner(tmp_path):
    from chatir_env.train.ppo import main

    out = tmp_path / "ppo"
    config = {"world": "shapes_oracle", "world_kwargs": {"corpus_size": 2000}, "policy": "gain_bias",
              "num_envs": 8, "total_timesteps": 320, "n_steps": 20, "batch_size": 80, "n_epochs": 1,
              "eval_every": 160, "eval_targets": 20, "net_arch": [32], "out_dir": str(out)}
    assert main(config) == 0
    assert json.loads((out / "best_policy.json").read_text())["config"]["policy"] == "gain_bias"
    questioner = PolicyQuestioner(out / "best_policy.pt")
    assert type(questioner.model) is GainBiasPolicy
    small = build_world("shapes_oracle", corpus_size=2000, num_targets=20)
    questioner.bind_world(small)
    record = play_episodes(small, questioner, max_rounds=3, progress=False)
    assert record.ranks.shape == (4, 20) and record.repeated_question_rate == 0.0


def test_gain_scale_reaches_the_policy_and_needs_the_gain_bias_policy():
    from chatir_env.config import ConfigError, validate
    from chatir_env.train.ppo import PPOConfig, policy_kwargs

    assert policy_kwargs(validate(PPOConfig, {"policy": "gain_bias", "gain_scale": 2.5})) == {
        "net_arch": [256, 256], "gain_scale": 2.5}
    assert policy_kwargs(validate(PPOConfig, {"policy": "gain_bias"})) == {"net_arch": [256, 256]}
    with pytest.raises(ConfigError, match="gain_scale=2.5 needs policy: gain_bias"):
        validate(PPOConfig, {"gain_scale": 2.5})


def test_a_policy_trained_on_another_retriever_is_refused(tmp_path):
    import shutil

    shipped = ROOT / "agents" / "policies" / "ppo_shapes_oracle.pt"
    policy = tmp_path / "policy.pt"
    shutil.copy(shipped, policy)
    small = build_world("shapes_oracle", corpus_size=2000, num_targets=20)
    policy.with_suffix(".json").write_text(json.dumps({"retriever_fingerprint": "shapes-dual-0123456789abcdef"}))
    with pytest.raises(ValueError, match=r"trained on rankings of retriever shapes-dual-0123456789abcdef .* "
                                         r"ranks with shapes-exact-v1-noise0"):
        PolicyQuestioner(policy).bind_world(small)
    policy.with_suffix(".json").write_text(json.dumps({"retriever_fingerprint": small.retriever.fingerprint}))
    PolicyQuestioner(policy).bind_world(small)  # the same retriever: accepted
