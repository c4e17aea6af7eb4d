"""``GainBiasPolicy``: a MaskablePPO policy that starts as the greedy information-gain questioner.

Its action logits are the usual MLP head's plus a learnable scale times the observation's ``gain``
(each pool question's answer entropy over the top candidates, what the greedy questioner maximises):

    logits = action_net(mlp(features(obs))) + gain_scale * obs["gain"]

SB3 initialises the action head with tiny weights, so an untrained policy with a large ``gain_scale``
asks (nearly) the greedy question; PPO then only has to learn where planning the whole dialog beats
one step of look-ahead, instead of rediscovering the greedy rule from the rewards.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from sb3_contrib.common.maskable.distributions import MaskableDistribution
from sb3_contrib.common.maskable.policies import MaskableMultiInputActorCriticPolicy
from stable_baselines3.common.policies import BasePolicy
from stable_baselines3.common.type_aliases import PyTorchObs

# The gain differs between good and poor questions by tenths of a nat: a scale of 20 turns 0.1 nat into a
# logit gap of 2, enough for the untrained policy to prefer the greedy question with most of its probability.
DEFAULT_GAIN_SCALE = 20.0


class GainBiasPolicy(MaskableMultiInputActorCriticPolicy):
    """``MaskableMultiInputActorCriticPolicy`` whose logits add ``gain_scale * obs["gain"]`` to the MLP's.

    Args:
        observation_space: a ``Dict`` space with a ``gain`` entry of one value per action (``PoolFeatures``).
        action_space: ``Discrete(max_pool)``.
        lr_schedule: the learning-rate schedule (SB3's).
        gain_scale: the scale's initial value; it is learned with the rest of the policy.
        **kwargs: the parent's (``net_arch``, ``activation_fn``, ...).

    Raises:
        ValueError: the observation has no ``gain`` entry, or its size is not the number of actions.
    """

    def __init__(self, observation_space, action_space, lr_schedule, gain_scale: float = DEFAULT_GAIN_SCALE, **kwargs: Any):
        gain = observation_space.spaces.get("gain") if hasattr(observation_space, "spaces") else None
        if gain is None or gain.shape != (int(action_space.n),):
            raise ValueError(f"GainBiasPolicy needs an observation 'gain' of shape ({int(action_space.n)},) (one per "
                             f"action), got {None if gain is None else gain.shape}")
        self.gain_scale_init = float(gain_scale)
        super().__init__(observation_space, action_space, lr_schedule, **kwargs)

    def _build(self, lr_schedule) -> None:
        # Made before the parent's _build creates the optimiser from self.parameters(), so the scale is learned.
        self.gain_scale = torch.nn.Parameter(torch.tensor(self.gain_scale_init))
        super()._build(lr_schedule)

    def _get_constructor_parameters(self) -> dict[str, Any]:
        # Saved with the policy (``policy.save``): ``load_policy`` tells the classes apart by this key.
        return {**super()._get_constructor_parameters(), "gain_scale": self.gain_scale_init}

    def _distribution(self, latent_pi: torch.Tensor, obs: PyTorchObs, action_masks) -> MaskableDistribution:
        logits = self.action_net(latent_pi) + self.gain_scale * obs["gain"].float()
        distribution = self.action_dist.proba_distribution(action_logits=logits)
        if action_masks is not None:
            distribution.apply_masking(action_masks)
        return distribution

    def _latents(self, obs: PyTorchObs) -> tuple[torch.Tensor, torch.Tensor]:
        features = self.extract_features(obs)
        if self.share_features_extractor:
            return self.mlp_extractor(features)
        pi_features, vf_features = features
        return self.mlp_extractor.forward_actor(pi_features), self.mlp_extractor.forward_critic(vf_features)

    def forward(self, obs: PyTorchObs, deterministic: bool = False,
                action_masks: np.ndarray | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Actions, values and log-probabilities of a batch (the parent's, with the gain-biased logits)."""
        latent_pi, latent_vf = self._latents(obs)
        distribution = self._distribution(latent_pi, obs, action_masks)
        actions = distribution.get_actions(deterministic=deterministic)
        log_prob = distribution.log_prob(actions)
        return actions.reshape((-1, *self.action_space.shape)), self.value_net(latent_vf), log_prob

    def evaluate_actions(self, obs: PyTorchObs, actions: torch.Tensor,
                         action_masks: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Values, log-probabilities of ``actions`` and entropies (PPO's loss), with the gain-biased logits."""
        latent_pi, latent_vf = self._latents(obs)
        distribution = self._distribution(latent_pi, obs, action_masks)
        return self.value_net(latent_vf), distribution.log_prob(actions), distribution.entropy()

    def get_distribution(self, obs: PyTorchObs, action_masks: np.ndarray | None = None) -> MaskableDistribution:
        """The masked action distribution of a batch (what ``predict`` samples or takes the mode of)."""
        latent_pi = self.mlp_extractor.forward_actor(BasePolicy.extract_features(self, obs, self.pi_features_extractor))
        return self._distribution(latent_pi, obs, action_masks)
