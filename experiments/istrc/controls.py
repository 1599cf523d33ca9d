"""The untrained-mapping control of the analysis (spec "done when": the circle assertions must fail
for an untrained mapping F).

A fresh ``ISTRCMapping`` with the trained run's hyper-parameters (the same D, Nh, width), its
weights drawn from ``seed`` without touching the global random state, in eval mode: BatchNorm then
normalises with its initial running statistics (mean 0, variance 1), as a model that never saw a
batch. The other control, the label-shuffled classifiers, is a stage run of its own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from lightning_modules.istrc.mapping import ISTRCMapping

__all__ = ["untrained_mapping"]


def untrained_mapping(hparams: Mapping[str, Any], seed: int) -> ISTRCMapping:
    """An untrained ``ISTRCMapping(**hparams)`` seeded by ``seed``, in eval mode, on the CPU."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        mapping = ISTRCMapping(**dict(hparams))
    return mapping.eval()
