"""Identity pairs for face verification: same-identity and different-identity image pairs.

The ``disentangle`` spec (section 2, row LFW) replaces LFW's 1000 pairs by 500 same + 500
different pairs drawn from the CelebA *test* identities, plus a second 1000-pair set from CelebA
*val* to fit the threshold (``lightning_modules.components.verification``); ISTRC draws its
verification pairs the same way. ``verification_pairs`` takes the identities of one split's items
and returns positions into that split, so the fitting and test sets come from two calls on two
identity-disjoint splits; ``pair_capacity`` says how many distinct pairs of each kind a split
holds, so a caller can ask for no more.

How the pairs are drawn (all from one ``torch.Generator`` seeded with ``seed``):

- same pairs are spread over the identities with >= 2 images as evenly as their pairs allow: the
  identities are visited in a random order, round-robin, each taking one more pair per round
  until it has none left. With fewer pairs than such identities, a random subset of identities
  gives one pair each; every identity with two images can be chosen. Within an identity, its
  pairs are drawn uniformly without repetition;
- different pairs are uniform over all unordered pairs of images whose identities differ, drawn
  without repetition;
- every pair ``(i, j)`` has ``i < j`` (no self pair; a pair and its reverse are one pair); the
  same pairs come first, shuffled, then the different pairs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
from torch import Tensor

__all__ = ["VerificationPairs", "pair_capacity", "verification_pairs"]

# A key space at most this large (or at most twice the number of keys wanted) is enumerated and
# permuted; a larger one is sampled with rejection of repeated keys.
_ENUMERATE_UP_TO = 1 << 16


class VerificationPairs(NamedTuple):
    """Pairs of item positions and whether each pair shows one identity.

    Attributes:
        index: long (P, 2), positions ``(i, j)`` with ``i < j`` in the split's dataset.
        same: bool (P,), True for a same-identity pair (label 1), False for a different one (0).
    """

    index: Tensor
    same: Tensor


def verification_pairs(
    identities: Tensor, same: int = 500, different: int = 500, seed: int = 0
) -> VerificationPairs:
    """Draw ``same`` same-identity pairs, then ``different`` different-identity pairs.

    Args:
        identities: Integer (N,), the identity of each item of one split (e.g.
            ``CelebAFaces.identities``).
        same: Number of pairs of two distinct images of one identity.
        different: Number of pairs of two images of different identities.
        seed: Seed of the ``torch.Generator`` that draws everything (same seed, same pairs).

    Returns:
        ``VerificationPairs`` with ``index`` (same + different, 2) and ``same`` (same + different,)
        on the device of ``identities``: rows ``[0, same)`` are the same pairs.

    Raises:
        ValueError: ``identities`` is not a 1-D integer tensor, a count is negative, or the split
            has fewer distinct pairs of a kind than asked (the message says how many it has).
    """
    dtype = identities.dtype
    if identities.dim() != 1 or dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise ValueError(
            f"identities must be a 1-D integer tensor, got {dtype} of shape "
            f"{tuple(identities.shape)}"
        )
    if same < 0 or different < 0:
        raise ValueError(f"same and different must be >= 0, got same={same}, different={different}")
    generator = torch.Generator().manual_seed(seed)
    groups = _Groups(identities.detach().cpu())
    same_pairs = groups.same_pairs(same, generator)  # (same, 2)
    same_pairs = same_pairs[torch.randperm(same, generator=generator)]
    different_pairs = groups.different_pairs(different, generator)  # (different, 2)
    index = torch.cat([same_pairs, different_pairs]).sort(dim=1).values
    labels = torch.arange(same + different) < same
    return VerificationPairs(index.to(identities.device), labels.to(identities.device))


def pair_capacity(identities: Tensor) -> tuple[int, int]:
    """How many distinct same-identity and different-identity pairs a split holds.

    With n_c images of identity c among N: sum_c n_c (n_c - 1) / 2 same pairs and
    (N^2 - sum_c n_c^2) / 2 different pairs (unordered, no self pair).

    Args:
        identities: Integer (N,) identity of each item.
    """
    if identities.dim() != 1 or identities.dtype.is_floating_point:
        raise ValueError(
            f"identities must be an integer (N,) tensor, got {identities.dtype} "
            f"{tuple(identities.shape)}"
        )
    counts = torch.unique(identities.cpu(), return_counts=True)[1].long()
    n = int(counts.sum())
    same = int((counts * (counts - 1)).sum()) // 2
    different = (n * n - int((counts * counts).sum())) // 2
    return same, different


class _Groups:
    """The items of a split grouped by identity: positions in sorted order and group bounds.

    Args:
        identities: Integer (N,) on the CPU.
    """

    def __init__(self, identities: Tensor) -> None:
        _, inverse, counts = torch.unique(identities, return_inverse=True, return_counts=True)
        self.size = identities.numel()
        self.order = torch.argsort(inverse, stable=True)  # (N,) item positions, grouped
        self.counts = counts  # (K,) images per identity
        self.ends = counts.cumsum(0)  # (K,) end of each group in ``order``
        self.starts = self.ends - counts
        self.group_of_sorted = inverse[self.order]  # (N,) group of each sorted position

    def same_pairs(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` distinct same-identity pairs, long (count, 2) of item positions."""
        capacity = self.counts * (self.counts - 1) // 2  # (K,) pairs per identity
        total = int(capacity.sum())
        if count > total:
            eligible = int((self.counts >= 2).sum())
            raise ValueError(
                f"asked for {count} same-identity pairs, but this split has only {total} distinct "
                f"ones ({eligible} identities with >= 2 images among {self.size} items)"
            )
        visit = torch.randperm(len(capacity), generator=generator)  # round-robin order
        quotas = _round_robin(capacity[visit], count)
        pairs = []
        for group, quota in zip(visit.tolist(), quotas.tolist(), strict=True):
            if quota == 0:
                continue
            n, start = int(self.counts[group]), int(self.starts[group])
            keys = _distinct_keys(
                space=n * (n - 1) // 2,
                count=quota,
                draw=lambda k, n=n: _draw_within(n, k, generator),
                enumerate_all=lambda n=n: _all_within(n),
                generator=generator,
            )
            pairs.append(self.order[start + torch.stack([keys // n, keys % n], dim=1)])
        return torch.cat(pairs) if pairs else torch.empty(0, 2, dtype=torch.long)

    def different_pairs(self, count: int, generator: torch.Generator) -> Tensor:
        """``count`` distinct different-identity pairs, long (count, 2) of item positions."""
        n = self.size
        partners = n - self.counts[self.group_of_sorted]  # (N,) other-identity images of each
        total = int(partners.sum()) // 2
        if count > total:
            raise ValueError(
                f"asked for {count} different-identity pairs, but this split has only {total} "
                f"distinct ones ({len(self.counts)} identities among {n} items)"
            )
        keys = _distinct_keys(
            space=total,
            count=count,
            draw=lambda k: self._draw_across(partners, k, generator),
            enumerate_all=self._all_across,
            generator=generator,
        )
        return self.order[torch.stack([keys // n, keys % n], dim=1)]

    def _draw_across(self, partners: Tensor, count: int, generator: torch.Generator) -> Tensor:
        """Keys ``a * N + b`` (a < b sorted positions) of ``count`` uniform cross pairs."""
        # a with probability proportional to its partners, b uniform among them: every ordered,
        # hence every unordered, different-identity pair is equally likely
        a = torch.multinomial(partners.double(), count, replacement=True, generator=generator)
        group = self.group_of_sorted[a]
        u = (torch.rand(count, generator=generator, dtype=torch.float64) * partners[a]).long()
        u = torch.minimum(u, partners[a] - 1)  # guard the rounding of rand * partners
        start, size = self.starts[group], self.counts[group]
        b = torch.where(u < start, u, u + size)  # skip a's own group
        return torch.minimum(a, b) * self.size + torch.maximum(a, b)

    def _all_across(self) -> Tensor:
        """Keys of every different-identity pair: a with each sorted position after its group."""
        ends = self.ends[self.group_of_sorted]  # (N,)
        a = torch.arange(self.size).repeat_interleave(self.size - ends)
        first = torch.cumsum(self.size - ends, 0) - (self.size - ends)  # first row of each a
        b = ends[a] + torch.arange(len(a)) - first[a]
        return a * self.size + b


def _round_robin(capacity: Tensor, count: int) -> Tensor:
    """Quotas of a round-robin that gives each slot one more per round while it has capacity.

    Equal to ``min(capacity, L)`` for the largest level L whose total fits ``count``, plus one for
    the first leftover slots (in order) whose capacity exceeds L.
    """
    low, high = 0, int(capacity.max()) if len(capacity) else 0
    while low < high:  # largest L with sum(min(capacity, L)) <= count
        mid = (low + high + 1) // 2
        if int(capacity.clamp(max=mid).sum()) <= count:
            low = mid
        else:
            high = mid - 1
    quotas = capacity.clamp(max=low)
    leftover = count - int(quotas.sum())
    open_slots = torch.nonzero(capacity > low).flatten()[:leftover]
    quotas[open_slots] += 1
    return quotas


def _draw_within(n: int, count: int, generator: torch.Generator) -> Tensor:
    """Keys ``a * n + b`` (a < b) of ``count`` uniform pairs of two of ``n`` items."""
    a = torch.randint(n, (count,), generator=generator)
    b = torch.randint(n - 1, (count,), generator=generator)
    b = b + (b >= a).long()  # uniform over the others
    return torch.minimum(a, b) * n + torch.maximum(a, b)


def _all_within(n: int) -> Tensor:
    """Keys ``a * n + b`` of every pair a < b of ``n`` items."""
    a, b = torch.triu_indices(n, n, offset=1)
    return a * n + b


def _distinct_keys(
    space: int,
    count: int,
    draw: Callable[[int], Tensor],
    enumerate_all: Callable[[], Tensor],
    generator: torch.Generator,
) -> Tensor:
    """``count`` distinct keys, uniform among the ``space`` keys, in random order.

    Args:
        space: How many distinct keys exist (>= count).
        count: How many to return.
        draw: Draws that many keys uniformly, with replacement.
        enumerate_all: Every key once.
        generator: The random stream (for the permutation of the enumeration).
    """
    if space <= max(_ENUMERATE_UP_TO, 2 * count):
        keys = enumerate_all()
        return keys[torch.randperm(len(keys), generator=generator)[:count]]
    keys = torch.empty(0, dtype=torch.long)
    while len(keys) < count:  # more than half the space is left, so few rounds
        keys = _first_occurrences(torch.cat([keys, draw(2 * (count - len(keys)) + 8)]))
    return keys[:count]


def _first_occurrences(keys: Tensor) -> Tensor:
    """The distinct values of ``keys`` (1-D) in the order of their first occurrence."""
    values, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((len(values),), len(keys), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(len(keys)), reduce="amin")
    return keys[first.sort().values]
