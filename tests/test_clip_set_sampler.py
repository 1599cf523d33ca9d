"""ClipSetSampler: P distinct persons x C distinct clips x F frames, person by person and clip by
clip, persons without C clips never drawn, short clips with replacement, seeded per epoch, and
DDP ranks that hold different persons and together make the one-process batch.

Ranks are passed explicitly (``num_replicas``, ``rank``): no process group is needed.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.formats.errors import SettingError
from datamodules.samplers import ClipSetSampler


def _toy(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """12 persons; person k has 1 + k % 4 clips (persons 0, 4, 8: one clip), clip j of person k
    has 4 + (j + k) % 3 frames; rows shuffled so that nothing relies on the order."""
    identities, clips = [], []
    clip = 0
    for k in range(12):
        for j in range(1 + k % 4):
            frames = 4 + (j + k) % 3
            identities += [k] * frames
            clips += [100 + clip] * frames  # labels need not start at 0
            clip += 1
    order = torch.randperm(len(clips), generator=torch.Generator().manual_seed(seed))
    return torch.tensor(identities)[order], torch.tensor(clips)[order]


IDENTITIES, CLIPS = _toy()


def _check_structure(batch: list[int], p: int, c: int, f: int) -> None:
    index = torch.tensor(batch)
    assert len(batch) == p * c * f
    persons = IDENTITIES[index].view(p, c * f)
    assert (persons == persons[:, :1]).all()  # rows [p*C*F, (p+1)*C*F) are one person
    assert persons[:, 0].unique().numel() == p  # P distinct persons
    assert not set(persons[:, 0].tolist()) & {0, 4, 8}  # one clip: never drawn
    clips = CLIPS[index].view(p, c, f)
    assert (clips == clips[..., :1]).all()  # rows [(p*C + c)*F, ...+F) are one clip
    for row in clips[..., 0]:
        assert row.unique().numel() == c  # C distinct clips of the person
    for frames in index.view(p * c, f):
        assert frames.unique().numel() == f  # every clip has 4 or more frames >= F: no repeats
        assert frames.tolist() == sorted(frames.tolist())  # in frame (index) order


def test_batches_are_clip_sets():
    with pytest.warns(UserWarning, match=r"3 persons have fewer than 2 clips .*\[0, 4, 8\]"):
        sampler = ClipSetSampler(IDENTITIES, CLIPS, 3, 2, 4, seed=1, num_replicas=1, rank=0)
    assert sampler.batch_size == 24 and sampler.num_batches == len(CLIPS) // 24
    for batch in sampler.batches():
        _check_structure(batch, 3, 2, 4)
    loader = DataLoader(range(len(CLIPS)), sampler=sampler, batch_size=sampler.batch_size)
    assert [b.tolist() for b in loader] == list(sampler.batches())
    assert len(sampler) == sampler.num_batches * 24


@pytest.mark.parametrize("world", [2, 3])
def test_ranks_hold_different_persons_and_make_the_one_process_batch(world):
    p, c, f = 2, 2, 3
    kwargs = {"clips_per_person": c, "frames_per_clip": f, "num_batches": 5, "seed": 7}
    with pytest.warns(UserWarning, match="fewer than 2 clips"):
        per_rank = [
            ClipSetSampler(IDENTITIES, CLIPS, p, num_replicas=world, rank=r, **kwargs)
            for r in range(world)
        ]
        single = ClipSetSampler(IDENTITIES, CLIPS, world * p, num_replicas=1, rank=0, **kwargs)
    for epoch in (0, 1):
        for s in [*per_rank, single]:
            s.set_epoch(epoch)
        ranks = [list(s.batches()) for s in per_rank]
        for step, whole in enumerate(single.batches()):
            parts = [r[step] for r in ranks]
            assert sum(parts, []) == whole
            persons = [set(IDENTITIES[part].tolist()) for part in parts]
            assert len(set().union(*persons)) == world * p  # no person on two ranks
            for part in parts:
                _check_structure(part, p, c, f)
    per_rank[0].set_epoch(0)
    first = list(per_rank[0].batches())
    per_rank[0].set_epoch(1)
    assert list(per_rank[0].batches()) != first


def test_short_clips_are_drawn_with_replacement():
    identities = torch.tensor([0, 0, 0, 0, 1, 1, 1, 1])
    clips = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])  # two frames per clip
    with pytest.warns(
        UserWarning, match="4 clips have fewer than 3 frames; drawn with replacement"
    ):
        sampler = ClipSetSampler(identities, clips, 2, 2, 3, num_batches=3)
    for batch in sampler.batches():
        assert len(batch) == 12
        assert (identities[batch].view(2, 6) == identities[batch].view(2, 6)[:, :1]).all()
        assert (clips[batch].view(4, 3) == clips[batch].view(4, 3)[:, :1]).all()


def test_too_few_persons_name_the_flag_and_what_counts():
    identities = torch.tensor([0, 0, 1, 1, 2])
    clips = torch.tensor([0, 1, 2, 3, 4])  # persons 0 and 1 have 2 clips, person 2 has 1
    with (
        pytest.warns(UserWarning, match="1 persons have fewer than 2 clips"),
        pytest.raises(
            SettingError,
            match=r"--data.init_args.style_persons=3 but the training split has only 2 persons "
            r"with 2 or more clips: set --data.init_args.style_persons=2 or fewer",
        ),
    ):
        ClipSetSampler(identities, clips, 3, 2, 1, flag="--data.init_args.style_persons")
    with (
        pytest.warns(UserWarning),
        pytest.raises(SettingError, match=r"=2 on 2 processes .* needs 4 distinct persons"),
    ):
        ClipSetSampler(identities, clips, 2, 2, 1, num_replicas=2, rank=0)


def test_bad_arguments():
    with pytest.raises(ValueError, match="clip 5 holds indices of more than one person"):
        ClipSetSampler([0, 0, 1], [4, 5, 5], 1, 1, 1)
    with pytest.raises(ValueError, match=r"identities \(3,\) and clips \(2,\)"):
        ClipSetSampler([0, 0, 1], [4, 5], 1, 1, 1)
    with pytest.raises(ValueError, match=r"must be positive, got \(1, 0, 1\)"):
        ClipSetSampler([0, 1], [0, 1], 1, 0, 1)
