"""Regression tests for every shipped trained artifact, on the full 50,000-scene benchmark corpus.

Each artifact plays a fixed, seeded random 256 of the 2,064 benchmark targets (``sample_targets(targets,
256, seed=0)``) and its Hits@10 must lie within three binomial standard errors of the figure its full
run recorded (``python bench/eval_artifacts.py``, bench/results/artifacts.json): sqrt(p (1 - p) / 256),
about 3 points at p = 0.5, so the tolerance is 7-9 points at the figures below. A retrained or damaged
artifact that lost a few targets per hundred fails it. The deterministic questioners (the PPO policies,
argmax; the dual encoder with fixed questioners) must also reproduce the subset figure recorded by that
run to within two targets (0.8 points: float rounding on another CPU may flip a near-tie).
"""

from __future__ import annotations

import math

import pytest
import torch

from chatir_env.agents import make_questioner
from chatir_env.eval.benchmark import resolve_args
from chatir_env.eval.runner import play_episodes
from chatir_env.metrics import hits_at_k
from chatir_env.target_sample import sample_targets
from chatir_env.worlds import build_world

SUBSET, SUBSET_SEED = 256, 0

# label: (world, questioner, arguments, round, Hits@10 of the full run on 2,064 targets, Hits@10 of its run on
# the 256-target subset or None where the questioner samples); from bench/results/artifacts.json.
ARTIFACTS = {
    "dual_encoder/caption_only": ("shapes", "caption_only", {}, 0, 15.41, 16.80),
    "dual_encoder/template": ("shapes", "shapes_template", {}, 10, 68.41, 65.62),
    "ppo_shapes": ("shapes", "policy", {"policy": "package:agents/policies/ppo_shapes.pt"}, 5, 54.12, 58.98),
    "ppo_shapes_oracle": ("shapes_oracle", "policy", {"policy": "package:agents/policies/ppo_shapes_oracle.pt"}, 5,
                          88.13, 87.11),
    "ppo_shapes_oracle_gain": ("shapes_oracle", "policy", {"policy": "package:agents/policies/ppo_shapes_oracle_gain.pt"},
                               1, 71.12, 73.05),
    "shapes_lm_sft": ("shapes_oracle", "lm", {"model_path": "shapes_lm_sft", "batch_size": 512}, 5, 60.27, None),
    "shapes_lm_grpo": ("shapes_oracle", "lm", {"model_path": "shapes_lm_grpo", "batch_size": 512}, 5, 80.67, None),
}


@pytest.fixture(scope="module")
def worlds():
    threads = torch.get_num_threads()
    torch.set_num_threads(max(threads, 2))  # the learned world encodes its 50,000 scenes once (cached afterwards)
    try:
        yield {name: build_world(name, split="benchmark") for name in ("shapes", "shapes_oracle")}
    finally:
        torch.set_num_threads(threads)


@pytest.mark.parametrize("label", sorted(ARTIFACTS))
def test_shipped_artifact_hits_at_10(worlds, label):
    if ARTIFACTS[label][1] == "lm":
        pytest.importorskip("transformers")
    world_name, spec, spec_args, round_, full, recorded_subset = ARTIFACTS[label]
    world = worlds[world_name]
    targets = sample_targets(world.targets, SUBSET, SUBSET_SEED)
    questioner = make_questioner(spec, **resolve_args(spec_args))
    if hasattr(questioner, "bind_world"):
        questioner.bind_world(world)
    # The LM questioners' chat holds no round budget, so their first rounds do not depend on it: play only those.
    ranks = play_episodes(world, questioner, targets, max_rounds=round_ if spec == "lm" else 10, progress=False).ranks
    hits = float(hits_at_k(ranks)[round_])
    p = full / 100.0
    tolerance = 3 * 100 * math.sqrt(p * (1 - p) / SUBSET) + 100 / SUBSET  # 3 standard errors, plus one target
    assert abs(hits - full) <= tolerance, f"{label}: Hits@10 R{round_} {hits:.1f} on the subset, full run {full:.1f}"
    if recorded_subset is not None:
        assert abs(hits - recorded_subset) <= 2 * 100 / SUBSET, f"{label}: {hits:.2f}, recorded {recorded_subset:.2f}"


def test_a_random_subset_estimates_the_full_benchmark_and_the_first_targets_do_not(worlds):
    from chatir_env.metrics import bootstrap_ci

    world = worlds["shapes_oracle"]
    questioner = make_questioner("caption_only")

    def round0(targets):
        return play_episodes(world, questioner, targets, max_rounds=1, progress=False).ranks

    full = float(hits_at_k(round0(world.targets))[0])
    sampled = round0(sample_targets(world.targets, 300, 0))
    lo, hi = bootstrap_ci(sampled, hits_at_k, samples=500)
    assert lo[0] <= full <= hi[0], (full, lo[0], hi[0])
    # the first 300 in corpus order win their ties (lower corpus indices rank first): 56.7% against 35.9%
    first = round0(list(world.targets)[:300])
    assert float(hits_at_k(first)[0]) > hi[0] + 10
