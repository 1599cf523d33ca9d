"""Face verification on each feature block of f: Table 2's layout.

The ``disentangle`` spec (section 6, "Verification accuracy") calls a pair "same identity" iff the
Euclidean distance of its two codes' block (f_p, f_e, f_s, f_-id = (f_p, f_e, f_s) or f_id) is at
most t, fits t on pairs of the validation split and reports the accuracy on 500 same + 500
different test pairs ([SUBST] for LFW: pairs of CelebA test identities). The pairs come from
``datamodules.verification_pairs``; the threshold and accuracy from
``lightning_modules.components.verification``. A small split may hold fewer distinct pairs than
asked: ``pair_capacity`` (``datamodules.verification_pairs``, re-exported here) says how many
it has, so the caller can draw as many as there are and report the count.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from torch import Tensor

from datamodules.verification_pairs import VerificationPairs, pair_capacity
from lightning_modules.components.verification import fit_and_score, pair_distances
from lightning_modules.disentangled_aae.factor_split import FactorSplit
from lightning_modules.disentangled_aae.feature_blocks import feature_block

__all__ = ["BlockVerification", "block_verification", "pair_capacity"]


class BlockVerification(NamedTuple):
    """One cell of Table 2.

    Attributes:
        threshold: t fitted on the fitting pairs (may be +-inf).
        accuracy: Test accuracy of "same iff distance <= t", in [0, 1].
    """

    threshold: float
    accuracy: float


def block_verification(
    fit_codes: Tensor,
    fit_pairs: VerificationPairs,
    test_codes: Tensor,
    test_pairs: VerificationPairs,
    split: FactorSplit,
    blocks: Sequence[str],
) -> dict[str, BlockVerification]:
    """Per block: the threshold fitted on the fitting pairs and the accuracy on the test pairs.

    Args:
        fit_codes: (N_fit, dim) codes f of the fitting split (CelebA val).
        fit_pairs: Pairs of positions into ``fit_codes``.
        test_codes: (N_test, dim) codes f of the test split.
        test_pairs: Pairs of positions into ``test_codes``.
        split: The split of f.
        blocks: Feature blocks (``feature_blocks``), e.g. ``TABLE2_BLOCKS``.

    Returns:
        ``{block: BlockVerification}`` in the order of ``blocks``.
    """
    result = {}
    for block in blocks:
        fit = pair_distances(feature_block(fit_codes, split, block), fit_pairs.index)
        test = pair_distances(feature_block(test_codes, split, block), test_pairs.index)
        result[block] = BlockVerification(
            *fit_and_score(fit, fit_pairs.same, test, test_pairs.same)
        )
    return result
