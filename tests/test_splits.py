"""Which scenes an env plays: training targets by default, the benchmark's only when asked by name;
what the benchmark command records (each world's split) and prints as it goes."""

import json

import gymnasium as gym
import pytest

import chatir_env  # noqa: F401  (registers the envs)
from chatir_env.eval.benchmark import run_benchmark
from chatir_env.worlds import build_world
from chatir_env.worlds.shapes import scene_corpus

TINY = {"corpus_size": 300, "num_targets": 20}


def scene_descriptions(world, split):
    scenes, _, ids, _ = scene_corpus(split, world.config["corpus_size"])
    rows = {image_id: i for i, image_id in enumerate(ids)}
    return {scenes.describe(rows[t]) for t in world.targets}


def test_gym_make_without_a_split_plays_training_targets_disjoint_from_the_benchmark():
    env = gym.make("ChatIR/ShapesOracle-v0", **TINY)
    world = env.unwrapped.world
    benchmark = build_world("shapes_oracle", split="benchmark", **TINY)
    assert world.config["split"] == "train" and world.config["target_set"] == "train"
    assert benchmark.config["split"] == "benchmark" and benchmark.config["target_set"] == "benchmark"
    assert all(t.startswith("shapes-train-") for t in world.targets)
    assert all(t.startswith("shapes-benchmark-") for t in benchmark.targets)
    assert not set(world.targets) & set(benchmark.targets)
    # Different seeded draws: no benchmark target's scene is among the training targets' scenes.
    assert not scene_descriptions(world, "train") & scene_descriptions(benchmark, "benchmark")
    _, info = env.reset(seed=0)
    assert info["target"].startswith("shapes-train-")


def test_make_vec_and_the_builder_default_to_the_training_split_too():
    envs = gym.make_vec("ChatIR/Shapes-v0", num_envs=2, retriever="exact", **TINY)
    assert envs.world.config["split"] == "train"
    assert build_world("shapes", retriever="exact", **TINY).config["split"] == "train"
    assert gym.make("ChatIR/ShapesOracle-v0", split="benchmark", **TINY).unwrapped.world.config["split"] == "benchmark"


def test_target_set_is_recorded_as_used_and_checked_against_the_split():
    validation = build_world("shapes_oracle", split="benchmark", target_set="validation", **TINY)
    benchmark = build_world("shapes_oracle", split="benchmark", **TINY)
    assert validation.config["target_set"] == "validation" and not set(validation.targets) & set(benchmark.targets)
    with pytest.raises(ValueError, match="target_set must be 'train'"):
        build_world("shapes_oracle", target_set="benchmark", **TINY)  # the benchmark's targets need split="benchmark"
    with pytest.raises(ValueError, match="unknown split 'test'"):
        build_world("shapes_oracle", split="test", **TINY)


def test_the_benchmark_command_evaluates_on_the_benchmark_split_and_records_it(tmp_path):
    config = {"name": "t", "max_rounds": 1, "num_targets": 5,
              "worlds": [{"name": "exact", "world": "shapes_oracle", "args": TINY},
                         {"name": "exact-train", "world": "shapes_oracle", "args": {**TINY, "split": "train"}}],
              "questioners": [{"name": "caption", "questioner": "caption_only"}], "out_dir": str(tmp_path)}
    assert run_benchmark(config, bootstrap=10, progress=False) == 0
    recorded = json.loads((tmp_path / "results.json").read_text())["config"]["world_configs"]
    assert recorded["exact"]["split"] == "benchmark" and recorded["exact"]["target_set"] == "benchmark"
    assert recorded["exact-train"]["split"] == "train"  # a split the config names is kept


def test_each_run_prints_its_result_as_soon_as_it_is_in(tmp_path, capsys):
    config = {"name": "t", "max_rounds": 1, "num_targets": 5,
              "worlds": [{"name": "exact", "world": "shapes_oracle", "args": TINY}],
              "questioners": [{"name": "caption", "questioner": "caption_only"}], "out_dir": str(tmp_path)}
    assert run_benchmark(config, bootstrap=10, progress=False) == 0
    hits = json.loads((tmp_path / "results.json").read_text())["results"]["exact/caption"]["hits@10"]
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("[exact/caption] Hits@10"))
    assert line.startswith(f"[exact/caption] Hits@10 {hits[0]:.1f} at round 0, {hits[1]:.1f} at round 1; BRI ")
