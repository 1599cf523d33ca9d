"""Load pretrained weights from a local file (safetensors or a torch state dict), offline.

Hubs are unreachable on compute nodes and in tests, so every pretrained network in the suite takes
an explicit file. Keys must match the model's parameter names exactly (after dropping the prefixes
of heads that are replaced, e.g. the ImageNet classifier); anything else raises, naming the keys.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import torch
from torch import nn

_SHOWN_KEYS = 10


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a state dict from ``.safetensors`` or a torch file (loaded with ``weights_only=True``).

    A torch file may hold the state dict itself or wrap it under ``"state_dict"`` (Lightning
    checkpoints) or ``"model"``.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file holds no mapping of parameter names to tensors.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path), device="cpu")
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(obj, dict):
        for wrapper in ("state_dict", "model"):
            if isinstance(obj.get(wrapper), dict):
                obj = obj[wrapper]
                break
    if not isinstance(obj, dict) or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"{path}: expected a state dict (parameter name -> tensor)")
    return obj


def _listing(kind: str, keys: Sequence[str]) -> str:
    shown = ", ".join(sorted(keys)[:_SHOWN_KEYS])
    more = f" (+{len(keys) - _SHOWN_KEYS} more)" if len(keys) > _SHOWN_KEYS else ""
    return f"{len(keys)} {kind} key(s): {shown}{more}"


def compare_state_dicts(
    expected: Mapping[str, torch.Tensor], loaded: Mapping[str, torch.Tensor]
) -> tuple[list[str], list[str], list[str]]:
    """What keeps ``loaded`` from loading strictly where ``expected`` is the state dict.

    Returns the keys missing from ``loaded``, those it has in excess, and the keys of both whose
    shapes differ (values without a shape count as one shape), each in the order of its dict.
    Callers word the error.
    """
    missing = [k for k in expected if k not in loaded]
    unexpected = [k for k in loaded if k not in expected]
    mis_shaped = [
        k
        for k, v in expected.items()
        if k in loaded and getattr(loaded[k], "shape", None) != getattr(v, "shape", None)
    ]
    return missing, unexpected, mis_shaped


def _mismatches(own: dict[str, torch.Tensor], state: dict[str, torch.Tensor]) -> list[str]:
    """Missing, unexpected and mis-shaped keys of ``state`` against the model's ``own``."""
    missing, unexpected, shapes = compare_state_dicts(own, state)
    mis_shaped = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in shapes]
    kinds = (("missing", missing), ("unexpected", unexpected), ("mis-shaped", mis_shaped))
    return [_listing(kind, keys) for kind, keys in kinds if keys]


def load_local_weights(
    model: nn.Module,
    path: str | Path,
    drop_prefixes: Sequence[str] = (),
) -> nn.Module:
    """Load the weights in ``path`` into ``model`` in place and return it.

    Keys of the file starting with one of ``drop_prefixes`` are ignored, and the model's own keys
    with those prefixes keep their (fresh) initialisation: that is how a 1000-class ImageNet head
    is swapped for a task head. Every other key must match by name and shape.

    Args:
        model: The network to fill.
        path: ``.safetensors`` or torch state-dict file.
        drop_prefixes: Prefixes of the replaced head(s), e.g. ``("fc.",)`` for a timm ResNet.

    Raises:
        ValueError: missing, unexpected or mis-shaped keys, listed by name.
    """
    return load_state(model, read_state_dict(path), drop_prefixes, source=str(path))


def load_state(
    model: nn.Module,
    state: Mapping[str, torch.Tensor],
    drop_prefixes: Sequence[str] = (),
    source: str = "state dict",
) -> nn.Module:
    """Load ``state`` (already read, e.g. a submodule's part of a checkpoint) into ``model``.

    As ``load_local_weights``, which reads the file and calls it: keys under ``drop_prefixes``
    are ignored on both sides, every other key must match by name and shape; ``source`` names
    where ``state`` came from in the error.

    Raises:
        ValueError: missing, unexpected or mis-shaped keys, listed by name.
    """
    prefixes = tuple(drop_prefixes)
    state = {k: v for k, v in state.items() if not k.startswith(prefixes)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(prefixes)}
    problems = _mismatches(own, state)
    if problems:
        raise ValueError(
            f"{source}: weights do not match {type(model).__name__} "
            f"(ignoring prefixes {list(prefixes)}): " + "; ".join(problems)
        )
    model.load_state_dict(state, strict=False)
    return model
