import gymnasium as gym
import numpy as np
import pytest

import chatir_env  # noqa: F401
from chatir_env.vector_env import ChatIRVectorEnv

from conftest import SMALL

QUESTIONS = ["how many objects are there?", "what is in the center?", "where is the star?", "what is the background?",
             "is there anything red?", "what shape is the blue object?", "what is in the top left?"]


def test_make_vec_uses_the_batched_env():
    envs = gym.make_vec("ChatIR/ShapesOracle-v0", num_envs=3, **SMALL)
    assert isinstance(envs, ChatIRVectorEnv) and envs.num_envs == 3
    obs, info = envs.reset(seed=0)
    assert len(obs["caption"]) == 3 and info["rank"].shape == (3,)


def test_vector_env_plays_the_same_episodes_as_single_envs():
    envs = gym.make_vec("ChatIR/ShapesOracle-v0", num_envs=4, **SMALL)
    obs, info = envs.reset(seed=1)
    targets = list(info["target"])
    trace = []
    for r in range(10):
        qs = [QUESTIONS[(r + i) % len(QUESTIONS)] for i in range(4)]
        obs, rew, term, trunc, info = envs.step(qs)
        trace.append((qs, rew, info.get("final_info", info)["rank"]))
    assert term.all() and "final_obs" in info
    for i, target in enumerate(targets):
        env = gym.make("ChatIR/ShapesOracle-v0", **SMALL)
        env.reset(options={"target": target})
        for qs, rew, ranks in trace:
            _, reward, _, _, single = env.step(qs[i])
            assert reward == pytest.approx(rew[i]) and single["rank"] == ranks[i]


def test_vector_env_autoresets_with_new_targets_and_is_seeded():
    a = gym.make_vec("ChatIR/ShapesOracle-v0", num_envs=2, max_rounds=2, **SMALL)
    b = gym.make_vec("ChatIR/ShapesOracle-v0", num_envs=2, max_rounds=2, **SMALL)
    for envs in (a, b):
        envs.reset(seed=5)
    for _ in range(2):
        oa, *_, ia = a.step(["what is in the center?"] * 2)
        ob, *_, ib = b.step(["what is in the center?"] * 2)
    assert list(ia["target"]) == list(ib["target"]) and list(oa["caption"]) == list(ob["caption"])
    assert ia["round"].tolist() == [0, 0]  # the new episodes start at round 0
    assert ia["final_info"]["round"].tolist() == [2, 2]


def test_vector_env_refuses_a_wrong_number_of_questions():
    envs = ChatIRVectorEnv(2, world="shapes_oracle", **SMALL)
    envs.reset(seed=0)
    with pytest.raises(ValueError, match="needs 2 questions, got 1"):
        envs.step(["what is in the center?"])


def test_infos_have_gymnasium_masks_and_stock_vector_wrappers_read_them():
    from gymnasium.wrappers.vector import DictInfoToList, RecordEpisodeStatistics

    envs = DictInfoToList(RecordEpisodeStatistics(ChatIRVectorEnv(2, world="shapes_oracle", max_rounds=2, **SMALL)))
    obs, infos = envs.reset(seed=0)
    assert isinstance(infos, list) and len(infos) == 2 and {"rank", "target", "dialog"} <= set(infos[0])
    total = np.zeros(2)
    for r in range(2):
        obs, rewards, terminated, truncated, infos = envs.step(["what is in the center?", "where is the star?"])
        total += rewards
    assert terminated.all()
    # DictInfoToList turned the _key-masked arrays into one dict per env, final_info included
    for i in range(2):
        assert infos[i]["final_info"]["round"] == 2 and infos[i]["round"] == 0
        assert infos[i]["final_info"]["question"] == ["what is in the center?", "where is the star?"][i]
        # RecordEpisodeStatistics summed the episode's rewards and counted its 2 steps
        assert infos[i]["episode"]["r"] == pytest.approx(total[i]) and infos[i]["episode"]["l"] == 2


def test_vector_infos_follow_add_info():
    envs = ChatIRVectorEnv(3, world="shapes_oracle", max_rounds=1, **SMALL)
    envs.reset(seed=0)
    *_, infos = envs.step(["what is in the center?"] * 3)
    assert infos["_final_info"].tolist() == [True] * 3 and infos["_final_obs"].tolist() == [True] * 3
    assert infos["final_info"]["_rank"].all() and infos["final_info"]["rank"].dtype == np.int64
    assert infos["final_obs"][1]["questions"][0] == "what is in the center?"
    assert infos["_rank"].all() and infos["round"].tolist() == [0, 0, 0]
