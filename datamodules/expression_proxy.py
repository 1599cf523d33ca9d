"""Proxy expression labels from CelebA's attributes: the suite's stand-in for AffectNet ([SUBST]).

The disentangled AAE learns its expression sub-vector from AffectNet's 8 classes and valence /
arousal (disentangle spec, section 2). The suite has no AffectNet, so two CelebA attributes give
four proxy classes and a pseudo valence / arousal pair:

=====  ============  =========  ====================  =======  =======
class  name          Smiling    Mouth_Slightly_Open   valence  arousal
=====  ============  =========  ====================  =======  =======
0      neutral       no         no                    0.4      0.3
1      smile         yes        no                    0.8      0.3
2      smile-open    yes        yes                   0.8      0.7
3      open          no         yes                   0.4      0.7
=====  ============  =========  ====================  =======  =======

Valence and arousal are in [0, 1] like the spec's (x + 1) / 2 mapping of AffectNet's values, so
Eq. 13's distances mean the same thing. Tab. 3's numbers are not comparable with the paper's.

``ExpressionFaces`` wraps a face dataset (``PosedFaces``) and adds the labels to its items:
``expression`` long and ``valence_arousal`` float (2,).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch.utils.data import Dataset

__all__ = ["EXPRESSION_CLASSES", "ExpressionFaces", "expression_labels"]

EXPRESSION_CLASSES: tuple[str, ...] = ("neutral", "smile", "smile-open", "open")
SMILING, MOUTH_OPEN = "Smiling", "Mouth_Slightly_Open"
VALENCE = (0.4, 0.8)  # not smiling, smiling
AROUSAL = (0.3, 0.7)  # mouth closed, open
# class of (smiling, open) read as the 2-bit number 2 * smiling + open: 00 01 10 11
_CLASS_OF_BITS = (0, 3, 1, 2)


def expression_labels(
    attributes: torch.Tensor, attribute_names: Sequence[str]
) -> tuple[torch.Tensor, torch.Tensor]:
    """The proxy expression class and pseudo valence / arousal of each image (module docstring).

    Args:
        attributes: (N, L) uint8 or float values in {0, 1} (``CelebAIndex.attributes``; not the
            file's +1 / -1), columns named by ``attribute_names``.
        attribute_names: The L column names; must include ``Smiling`` and ``Mouth_Slightly_Open``.

    Returns:
        ``(category, valence_arousal)``: long (N,) in {0, 1, 2, 3} and float (N, 2).

    Raises:
        ValueError: A missing ``Smiling`` or ``Mouth_Slightly_Open`` column, a shape that does not
            match the names, or a value other than 0 / 1 in those columns.
    """
    names = list(attribute_names)
    missing = [n for n in (SMILING, MOUTH_OPEN) if n not in names]
    if missing:
        raise ValueError(
            f"the proxy expression labels need the CelebA attributes {SMILING} and {MOUTH_OPEN}; "
            f"missing {missing} from the {len(names)} attribute names given"
        )
    if attributes.ndim != 2 or attributes.shape[1] != len(names):
        raise ValueError(
            f"attributes must be (N, {len(names)}) to match the names, "
            f"got {tuple(attributes.shape)}"
        )
    columns = attributes[:, [names.index(SMILING), names.index(MOUTH_OPEN)]]  # (N, 2)
    if not ((columns == 0) | (columns == 1)).all():
        bad = sorted({float(v) for v in columns.flatten().tolist()} - {0.0, 1.0})
        raise ValueError(
            f"{SMILING} / {MOUTH_OPEN} values must be 0 or 1 (CelebAIndex.attributes), "
            f"got {bad[:5]}"
        )
    smiling, mouth_open = columns[:, 0].long(), columns[:, 1].long()  # (N,), (N,)
    category = torch.tensor(_CLASS_OF_BITS)[2 * smiling + mouth_open]
    valence = torch.tensor(VALENCE)[smiling]
    arousal = torch.tensor(AROUSAL)[mouth_open]
    return category, torch.stack([valence, arousal], 1)


class ExpressionFaces(Dataset):
    """A face dataset whose items also carry the proxy expression labels.

    Args:
        faces: A dataset with an ``attributes`` (N, L) table aligned with its items (a
            ``datamodules.posed_faces.PosedFaces`` or ``datamodules.celeba.CelebAFaces`` split).
        attribute_names: Names of ``faces.attributes``' columns.

    Items: ``faces``' items plus ``expression`` long (class, module docstring) and
    ``valence_arousal`` float (2,).
    """

    def __init__(self, faces: Dataset, attribute_names: Sequence[str]) -> None:
        self.faces = faces
        self.expression, self.valence_arousal = expression_labels(faces.attributes, attribute_names)

    def __len__(self) -> int:
        return len(self.faces)

    def __getitem__(self, i: int) -> dict:
        item = dict(self.faces[i])
        item["expression"] = self.expression[i]
        item["valence_arousal"] = self.valence_arousal[i]
        return item
