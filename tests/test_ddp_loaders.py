"""The loaders Lightning uses under real 2-process DDP (gloo, CPU): MinMaxCAM on synthetic birds.

Lightning keeps the class-set and evaluation samplers (no injection error); at every step the two
ranks train on different classes, each in N x m groups, and together on the single-process batch
of 2N classes; val and test see every image exactly once, each rank in file order.
"""

from __future__ import annotations

import json

import pytest
from ddp_class_sets import DATA
from ddp_runs import run_script

from datamodules.cub import CUBDataModule
from datamodules.samplers import ClassSetSampler
from datamodules.synthetic.birds import make_synthetic_cub


@pytest.mark.slow  # two processes each import torch and Lightning and start gloo
def test_minmaxcam_loaders_under_two_process_ddp(tmp_path):
    root = make_synthetic_cub(tmp_path / "birds", 6, (4, 2, 3), (40, 48), seed=0)
    out = tmp_path / "out"
    out.mkdir()
    run_script("ddp_class_sets", ["tests/ddp_class_sets.py", root, out])
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in range(2)]
    for rank in ranks:
        assert rank["samplers"] == {
            "train": "ClassSetSampler",
            "val": "UnrepeatedDistributedSampler",
            "test": "UnrepeatedDistributedSampler",
        }

    data = CUBDataModule(root=str(root), **DATA)
    data.setup("fit")
    train = data.splits["train"].split
    labels = [train.labels[p] for p in train.image_ids]
    n, m = DATA["classes_per_batch"], DATA["samples_per_class"]
    single = ClassSetSampler(labels, 2 * n, m, seed=DATA["seed"], num_replicas=1, rank=0)
    expected = [[train.image_ids[i] for i in batch] for batch in single.batches()]
    assert len(ranks[0]["train"]) == len(ranks[1]["train"]) == len(expected) == 3
    for step, whole in enumerate(expected):
        parts = [rank["train"][step] for rank in ranks]
        assert parts[0] + parts[1] == whole  # complete: one process with 2N classes
        classes = [[train.labels[p] for p in part] for part in parts]
        assert not set(classes[0]) & set(classes[1])  # disjoint classes
        for part in classes:  # N classes x m rows, class by class
            groups = [part[i : i + m] for i in range(0, len(part), m)]
            assert len(groups) == n and all(len(set(g)) == 1 for g in groups)
            assert len({g[0] for g in groups}) == n

    for split in ("val", "test"):
        ids = data.splits[split].split.image_ids
        for r, rank in enumerate(ranks):
            assert sum(rank[split], []) == ids[r::2]  # each image once over the ranks, file order
