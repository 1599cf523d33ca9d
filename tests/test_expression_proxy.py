"""The [SUBST] expression labels from Smiling x Mouth_Slightly_Open: hand-checked classes and
valence / arousal, the official column positions, the wrapped dataset (also on the twin's Stage A
items against the sidecar), and clear errors."""

from __future__ import annotations

import csv

import pytest
import torch

from datamodules.disentangled_aae import DisentangledAAEDataModule
from datamodules.expression_proxy import EXPRESSION_CLASSES, ExpressionFaces, expression_labels
from datamodules.formats.celeba import ATTRIBUTE_NAMES


def test_four_classes_and_pseudo_valence_arousal_by_hand():
    names = ["Male", "Mouth_Slightly_Open", "Smiling"]
    # rows: (Male, open, smiling)
    attributes = torch.tensor(
        [[1, 0, 0], [0, 0, 1], [1, 1, 1], [0, 1, 0], [1, 1, 0]], dtype=torch.uint8
    )
    category, va = expression_labels(attributes, names)
    # neither -> 0 neutral; smiling closed -> 1 smile; both -> 2 smile-open; open only -> 3 open
    assert category.tolist() == [0, 1, 2, 3, 3]
    assert category.dtype == torch.long
    # valence 0.8 if smiling else 0.4; arousal 0.7 if open else 0.3
    expected = [[0.4, 0.3], [0.8, 0.3], [0.8, 0.7], [0.4, 0.7], [0.4, 0.7]]
    torch.testing.assert_close(va, torch.tensor(expected))
    assert va.dtype == torch.float32
    assert EXPRESSION_CLASSES == ("neutral", "smile", "smile-open", "open")


def test_reads_the_official_columns_from_float_tables():
    # Smiling is column 31 and Mouth_Slightly_Open column 21 of CelebA's 40; other columns are 1s
    # so that reading a wrong column would give class 2 everywhere.
    attributes = torch.ones(4, 40)
    attributes[:, 31] = torch.tensor([0.0, 1.0, 1.0, 0.0])
    attributes[:, 21] = torch.tensor([0.0, 0.0, 1.0, 1.0])
    category, va = expression_labels(attributes, ATTRIBUTE_NAMES)
    assert category.tolist() == [0, 1, 2, 3]
    assert va[:, 0].tolist() == pytest.approx([0.4, 0.8, 0.8, 0.4])
    assert va[:, 1].tolist() == pytest.approx([0.3, 0.3, 0.7, 0.7])


def test_wrapped_items_carry_the_labels():
    class Faces(torch.utils.data.Dataset):
        attributes = torch.tensor([[0, 1], [1, 1], [1, 0]], dtype=torch.uint8)

        def __len__(self):
            return 3

        def __getitem__(self, i):
            return {"image": torch.full((1,), float(i)), "identity": torch.tensor(i)}

    faces = ExpressionFaces(Faces(), ["Smiling", "Mouth_Slightly_Open"])
    assert len(faces) == 3
    item = faces[0]  # not smiling, open -> class 3, (0.4, 0.7)
    assert item["expression"].item() == 3 and item["image"].item() == 0.0
    torch.testing.assert_close(item["valence_arousal"], torch.tensor([0.4, 0.7]))
    assert faces[1]["expression"].item() == 2 and faces[2]["expression"].item() == 1


def test_errors_name_what_is_wrong():
    with pytest.raises(
        ValueError, match=r"Smiling and Mouth_Slightly_Open.*\['Mouth_Slightly_Open'\]"
    ):
        expression_labels(torch.zeros(2, 2), ["Smiling", "Male"])
    with pytest.raises(ValueError, match=r"missing \['Smiling', 'Mouth_Slightly_Open'\]"):
        expression_labels(torch.zeros(2, 1), ["Male"])
    with pytest.raises(ValueError, match=r"\(N, 2\).*\(2, 3\)"):
        expression_labels(torch.zeros(2, 3), ["Smiling", "Mouth_Slightly_Open"])
    with pytest.raises(ValueError, match=r"0 or 1.*-1\.0"):  # the file's -1, not converted
        expression_labels(torch.tensor([[1, -1]]), ["Smiling", "Mouth_Slightly_Open"])


def test_stage_a_items_gain_the_labels_of_their_image(synthetic_faces_root):
    """On the twin: the wrapped PosedFaces items carry the classes of the sidecar's attributes."""
    dm = DisentangledAAEDataModule(
        root=str(synthetic_faces_root / "celeba"), image_size=16, hist_eq=False, num_workers=0
    )
    dm.setup("fit")
    faces = ExpressionFaces(dm.splits["train"], dm.index.attribute_names)
    with open(synthetic_faces_root / "celeba" / "synthetic_factors.csv") as f:
        truth = {r["image_id"]: r for r in csv.DictReader(f)}
    by_bits = {("0", "0"): 0, ("1", "0"): 1, ("1", "1"): 2, ("0", "1"): 3}
    seen = set()
    for i in range(0, len(faces), 7):
        item = faces[i]
        row = truth[item["image_id"]]
        expected = by_bits[(row["Smiling"], row["Mouth_Slightly_Open"])]
        assert item["expression"].item() == expected and item["image"].shape == (3, 16, 16)
        valence = 0.8 if row["Smiling"] == "1" else 0.4
        arousal = 0.7 if row["Mouth_Slightly_Open"] == "1" else 0.3
        torch.testing.assert_close(item["valence_arousal"], torch.tensor([valence, arousal]))
        seen.add(expected)
    assert seen == {0, 1, 2, 3}
