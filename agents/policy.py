"""``PolicyQuestioner``: a trained pooled policy (SB3 / sb3-contrib) as a questioner."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np

from ..pooled import PoolFeatures, pool_masks


def load_policy(path: str | Path):
    """A MaskablePPO checkpoint (``.zip``) or an exported policy (``.pt``), on the CPU.

    An exported policy is a ``MaskableMultiInputActorCriticPolicy`` or, where its saved constructor
    arguments hold a ``gain_scale``, a ``GainBiasPolicy``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"policy checkpoint {path} does not exist; train one with `chatir train ppo`")
    if path.suffix == ".zip":
        from sb3_contrib import MaskablePPO

        return MaskablePPO.load(str(path), device="cpu")
    import torch
    from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy

    from .gain_policy import GainBiasPolicy

    # SB3's own policy.save format (pickled constructor arguments); the shipped policies are this project's files.
    saved = torch.load(str(path), map_location="cpu", weights_only=False)
    cls = GainBiasPolicy if "gain_scale" in saved.get("data", {}) else MaskableMultiInputActorCriticPolicy
    return cls.load(str(path), device="cpu")


class PolicyQuestioner:
    """Asks the pool question a trained MaskablePPO (or PPO) policy picks, deterministically.

    ``policy`` is a path (a MaskablePPO ``.zip`` checkpoint, or a ``.pt`` policy exported without
    optimiser state, as shipped) or a loaded model or policy. The world is bound by the benchmark
    (``bind_world``); a policy trained for another pool size or retriever is refused with the sizes.
    Its features are built from ``observation["candidates"]`` (the core's top candidates and dialog
    vector, handed over by the eval runner because ``candidate_top_k`` is set): nothing is encoded here.
    """

    def __init__(self, policy, deterministic: bool = True, top_k: int | None = None):
        self.source = None
        self.trained_on: str | None = None  # the retriever fingerprint recorded beside a policy file
        if isinstance(policy, (str, Path)):
            self.source = Path(policy)
            provenance = self.source.with_suffix(".json")
            if provenance.exists():
                self.trained_on = json.loads(provenance.read_text()).get("retriever_fingerprint")
            policy = load_policy(policy)
        self.model = policy
        self.deterministic = deterministic
        self.top_k = top_k
        self.features: PoolFeatures | None = None

    @property
    def candidate_top_k(self) -> int:
        """How many of the core's top candidates each observation must carry (known once a world is bound)."""
        return self.features.top_k if self.features is not None else 0

    def bind_world(self, world) -> None:
        """Builds the policy's features for ``world``.

        Raises:
            ValueError: the world's pool or observation shapes differ from the policy's, or the policy's
                provenance names another retriever than the world's (its features would mean other things).
        """
        current = getattr(world.retriever, "fingerprint", None)
        if self.trained_on and current and current != self.trained_on:
            raise ValueError(f"policy {self.source} was trained on rankings of retriever {self.trained_on} "
                             f"(its .json), but world {world.name!r} ranks with {current}: retrain it on this "
                             "retriever (`chatir train ppo`) or build the world with the weights it was trained on")
        space = self.model.observation_space
        n_actions = int(self.model.action_space.n)
        top_k = self.top_k or int(space["candidates"].shape[0])
        max_rounds = int(space["round"].shape[0]) - 1
        pool_size = len(world.question_pool(world.targets[0]))
        if pool_size > n_actions:
            raise ValueError(f"policy chooses among {n_actions} questions but world {world.name!r} has a pool of {pool_size}")
        features = PoolFeatures(world, max_rounds, n_actions, top_k)
        for key in space.spaces:
            if space[key].shape != features.space[key].shape:
                raise ValueError(
                    f"policy observation {key!r} has shape {space[key].shape} but world {world.name!r} gives "
                    f"{features.space[key].shape}: the policy was trained for another pool size or retriever"
                )
        self.features = features

    def reset(self, captions: Sequence[str], pools: Sequence[Sequence[str]] | None = None) -> None:
        if self.features is None:
            raise RuntimeError("PolicyQuestioner.bind_world(world) must be called before reset()")
        if pools is None:
            raise ValueError("PolicyQuestioner needs the episodes' question pools")
        self.pools = [list(p) for p in pools]

    def ask(self, observations: Sequence[dict]) -> list[str]:
        if any("candidates" not in o for o in observations):
            raise ValueError("PolicyQuestioner reads observation['candidates'] (the core's top candidates); "
                             "play it with chatir_env.eval.runner.play_episodes or pass ChatIREnv's info['candidates']")
        asked = np.zeros((len(observations), self.features.max_pool), bool)
        for i, (o, pool) in enumerate(zip(observations, self.pools)):
            index = {q: j for j, q in enumerate(pool)}
            for q in o["questions"][: o["round"]]:
                if q in index:
                    asked[i, index[q]] = True
        obs = self.features.observe_candidates([o["candidates"] for o in observations], [o["round"] for o in observations],
                                               asked)
        masks = pool_masks(self.pools, asked, self.features.max_pool)
        actions, _ = self.model.predict(obs, deterministic=self.deterministic, action_masks=masks)
        return [pool[int(a)] for pool, a in zip(self.pools, np.asarray(actions).reshape(-1))]
