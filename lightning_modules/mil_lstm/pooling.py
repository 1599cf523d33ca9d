"""The interface of a MIL pooling: instance features of a padded bag batch -> one score per bag.

A pooling is a plain ``nn.Module`` that ``MILModule`` builds as ``pooling(feature_dim)`` after its
instance unit, so the first constructor argument of every pooling is the instance feature size D
and a seed gives the same weights to the instance unit whatever pooling follows it.
"""

from __future__ import annotations

import torch
from torch import nn


def masked_softmax(scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Softmax over the instances (dim 1) of (B, T) scores, padded positions weight 0."""
    return torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)


class BagPooling(nn.Module):
    """Base of the poolings: ``forward(features (B, T, D), mask (B, T)) -> score (B,)``.

    Padded positions (``mask`` False) must not change a bag's score. The score is a logit for
    classification (the module applies the sigmoid) and the predicted count for counting.

    A pooling whose score already is a probability sets ``score_is_probability`` (it then cannot
    count) and may bring the classification loss its score needs by overriding
    :meth:`classification_loss`. Poolings with a set representation of their own override
    :meth:`singleton_embedding`; recurrent ones :meth:`forward_states` (used by the studies).
    """

    #: True when ``forward`` returns a probability in [0, 1] rather than a logit or a count.
    score_is_probability: bool = False

    def forward(self, features: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def classification_loss(self, probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Bernoulli NLL with p clamped to [1e-5, 1 - 1e-5] (Ilse et al.), mean over bags."""
        p = probs.float().clamp(1e-5, 1 - 1e-5)
        return -(target * p.log() + (1 - target) * (1 - p).log()).mean()

    def singleton_embedding(self, features: torch.Tensor) -> torch.Tensor:
        """Representation (N, E) of each instance (N, D) as a one-instance set: the features."""
        return features

    def forward_states(self, features: torch.Tensor) -> torch.Tensor | None:
        """State after each instance (T, H) of one bag's features (T, D); None: no such state."""
        return None
