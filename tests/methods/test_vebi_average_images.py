"""VEBI's receptive fields (hand-worked for the suite's nets, and against the support of an input
gradient) and the average images of Fig. 3.5 (the zero-padded crop, the top-k choice, a planted
filter whose average image is known)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.vebi.average_images import (
    average_images,
    crop_fields,
    relevant_tiles,
    top_images,
)
from lightning_modules.vebi.module_walk import ModuleWalk
from lightning_modules.vebi.nets import an8flower_cnn, mnist_lenet
from lightning_modules.vebi.receptive_field import ReceptiveField, layer_field, receptive_fields
from lightning_modules.vebi.responses import ResponseIndex

# (layer, size, jump, start), square, worked by hand from r_l = r + (M-1) j, j_l = j S,
# start_l = start + ((M-1)/2 - O) j:
# LeNet: conv1 5x5 -> (5, 1, 2); pool 2/2 -> (6, 2, 2.5); conv2 5x5 -> (6 + 4*2, 2, 2.5 + 2*2);
# pool 2/2 -> (14 + 2, 4, 6.5 + 0.5*2).
LENET = [("conv1", 5, 1, 2.0), ("pool1", 6, 2, 2.5), ("conv2", 14, 2, 6.5), ("pool2", 16, 4, 7.5)]
# an8Flower CNN, padding 2 on the 5x5 convs, conv3 3x3 stride 2 padding 1:
# conv1 (5, 1, 0 + (2-2)*1); pool1 (6, 2, 0.5); conv2 (6 + 4*2, 2, 0.5 + 0*2);
# pool2 (16, 4, 0.5 + 0.5*2); conv3 (16 + 2*4, 8, 1.5 + (1-1)*4).
FLOWER = [
    ("conv1", 5, 1, 0.0),
    ("pool1", 6, 2, 0.5),
    ("conv2", 14, 2, 0.5),
    ("pool2", 16, 4, 1.5),
    ("conv3", 24, 8, 1.5),
]


@pytest.mark.parametrize(
    ("net", "expected", "fc"),
    [(mnist_lenet(), LENET, "fc3"), (an8flower_cnn(6), FLOWER, "fc4")],
    ids=["lenet", "an8flower"],
)
def test_receptive_fields_of_the_suite_nets_match_the_hand_worked_recursion(net, expected, fc):
    walk = ModuleWalk.of(net.eval())
    for layer, size, jump, start in expected:
        field = layer_field(walk, layer)
        assert (field.size, field.jump, field.start) == ((size,) * 2, (jump,) * 2, (start,) * 2)
        assert not field.whole_image
    assert layer_field(walk, fc).whole_image
    # LeNet's pool2 unit 3 sees rows 12..27, the last 16 of the 28 (4i .. 4i + 15).
    if fc == "fc3":
        assert layer_field(walk, "pool2").corner(3, 0) == (12, 0)


def _linear_twin(net: nn.Sequential) -> nn.Sequential:
    """The net with the same windows, made linear with positive weights (max-pool -> avg-pool,
    ReLU -> identity, |w| + 0.1), so the input gradient of a unit is > 0 exactly on its field."""
    layers = []
    for module in net:
        if isinstance(module, nn.MaxPool2d):
            module = nn.AvgPool2d(module.kernel_size, module.stride, module.padding)
        elif isinstance(module, nn.ReLU):
            module = nn.Identity()
        elif isinstance(module, nn.Conv2d):
            with torch.no_grad():
                module.weight.copy_(module.weight.abs() + 0.1)
        layers.append(module)
    return nn.Sequential(*layers)


def _support(twin: nn.Sequential, end: int, size: int, unit: tuple[int, int]) -> list[range]:
    """Rows and columns of the input where d A[0, 0, unit] / d I is nonzero (contiguous)."""
    image = torch.rand(1, twin[0].in_channels, size, size, requires_grad=True)
    twin[: end + 1](image)[0, 0, unit[0], unit[1]].backward()
    nonzero = image.grad[0].abs().sum(0) > 0
    spans = []
    for axis in (1, 0):
        hit = nonzero.any(axis).nonzero()[:, 0]
        assert torch.equal(hit, torch.arange(hit[0], hit[-1] + 1)), "support is not contiguous"
        spans.append(range(int(hit[0]), int(hit[-1]) + 1))
    return spans


ODD = nn.Sequential(
    nn.Conv2d(1, 2, (3, 5), stride=(2, 1), padding=(0, 2)),
    nn.ReLU(),
    nn.MaxPool2d(3, 2, padding=1),
    nn.Conv2d(2, 2, 3, stride=2),
)


@pytest.mark.parametrize(
    ("net", "size", "units"),
    [
        (mnist_lenet(), 28, [(0, 0), (1, 2), (3, 3)]),
        (an8flower_cnn(6), 64, [(0, 0), (3, 5), (7, 7)]),
        (ODD, 40, [(0, 0), (1, 2), (3, 3)]),
    ],
    ids=["lenet", "an8flower", "rectangular"],
)
def test_receptive_fields_equal_the_support_of_the_input_gradient(net, size, units):
    torch.manual_seed(0)
    walk = ModuleWalk.of(net.eval())
    twin = _linear_twin(nn.Sequential(*walk.modules))
    for end, field in enumerate(receptive_fields(walk)):
        if field.whole_image or isinstance(walk.modules[end], nn.ReLU):
            continue
        for unit in units:
            rows, cols = _support(twin, end, size, unit)
            top, left = field.corner(*unit)
            # the field, placed at start + i j, clipped to the image
            expected_rows = range(max(0, top), min(size, top + field.size[0]))
            expected_cols = range(max(0, left), min(size, left + field.size[1]))
            assert (rows, cols) == (expected_rows, expected_cols), (walk.names[end], unit)
            centre = [field.start[a] + unit[a] * field.jump[a] for a in (0, 1)]
            assert centre == [top + (field.size[0] - 1) / 2, left + (field.size[1] - 1) / 2]


def test_an_interior_unit_of_conv3_sees_exactly_r_pixels():
    walk = ModuleWalk.of(an8flower_cnn(6).eval())
    twin = _linear_twin(nn.Sequential(*walk.modules))
    rows, cols = _support(twin, walk.index("conv3"), 64, (3, 4))
    # unit i of conv3 covers 1.5 + 8 i -/+ 11.5: rows 14..37, cols 22..45
    assert (rows, cols) == (range(14, 38), range(22, 46))


def test_the_crop_is_zero_padded_outside_the_image():
    image = torch.arange(1.0, 26.0).view(1, 1, 5, 5)  # pixel (r, c) holds 5 r + c + 1
    images = torch.cat([image, 10 * image])
    field = ReceptiveField(size=(3, 3), jump=(2, 2), start=(0.0, 0.0))
    crops = crop_fields(images, field, torch.tensor([[0, 0], [2, 1]]))
    # unit (0, 0): centre pixel (0, 0), rows -1..1, cols -1..1
    assert torch.equal(crops[0, 0], torch.tensor([[0.0, 0, 0], [0, 1, 2], [0, 6, 7]]))
    # unit (2, 1) of the second image: centre pixel (4, 2), rows 3..5, cols 1..3
    assert torch.equal(crops[1, 0], 10 * torch.tensor([[17.0, 18, 19], [22, 23, 24], [0, 0, 0]]))
    even = ReceptiveField(size=(2, 4), jump=(1, 1), start=(4.5, 0.5))  # rows 4..5, cols -1..2
    crop = crop_fields(image, even, torch.tensor([[0, 0]]))
    assert torch.equal(crop[0, 0], torch.tensor([[0.0, 21, 22, 23], [0, 0, 0, 0]]))


def test_top_images_ranks_one_class_by_strength():
    strengths = torch.tensor([5.0, 9.0, 1.0, 7.0, 9.0, 3.0, 8.0])
    labels = torch.tensor([0, 1, 0, 1, 1, 0, 1])
    assert top_images(strengths, labels, 1, top=3).tolist() == [1, 4, 6]  # 9, 9 (tie), 8
    assert top_images(strengths, labels, 0, top=100).tolist() == [0, 5, 2]  # all 3 of class 0
    assert top_images(strengths, labels, 2, top=3).tolist() == []


def test_relevant_tiles_take_the_positive_weights_only():
    weights = torch.tensor([[0.5, -0.2], [0.0, 1e-9], [0.0, 0.3]], dtype=torch.float64)
    assert relevant_tiles(weights) == [(0, 0, 0.5), (2, 1, 0.3)]


def _planted_net() -> nn.Sequential:
    """conv1 (1 filter, 3x3, padding 1) that copies its centre pixel; fc2 (2 units) that sums the
    image; fc3, the class layer. A^conv1 peaks at an image's brightest pixel."""
    net = nn.Sequential(
        nn.Conv2d(1, 1, 3, padding=1, bias=False), nn.ReLU(), nn.Flatten(),
        nn.Linear(64, 2, bias=False), nn.ReLU(), nn.Linear(2, 2),
    )  # fmt: skip
    with torch.no_grad():
        net[0].weight.zero_()[0, 0, 1, 1] = 1.0
        net[3].weight.fill_(1.0)
    return net.eval()


def test_average_images_of_a_planted_filter():
    # class 0: one bright pixel of brightness v at (r, c), v ranking the images by s = v
    spots = [(0, 3, 4, 0), (1, 0, 2, 0), (2, 5, 0, 0), (3, 7, 7, 0), (9, 1, 1, 1)]
    dataset = []
    for v, r, c, label in spots:
        image = torch.zeros(1, 8, 8)
        image[0, r, c] = float(v)
        dataset.append({"image": image, "label": torch.tensor(label)})
    net = _planted_net()
    index = ResponseIndex.of(net)  # x: conv1's filter (entry 0), fc2's two units (entries 1, 2)
    weights = torch.zeros(3, 2, dtype=torch.float64)
    weights[0, 0] = 0.7  # the conv filter speaks for class 0
    weights[2, 1] = 0.2  # fc2's second unit for class 1
    tiles = average_images(net, index, weights, dataset, top=2, batch_size=2)
    conv, fc = tiles
    assert (conv.layer, conv.filter, conv.cls, conv.count) == ("0", 0, 0, 2)
    # the top-2 of class 0 are v = 3 at (7, 7) and v = 2 at (5, 0); 3x3 crops centred there;
    # both touch the border, where the crop is zero
    expected = torch.zeros(1, 3, 3)
    expected[0, 1, 1] = (3 + 2) / 2
    torch.testing.assert_close(conv.image, expected)
    assert (fc.layer, fc.kind, fc.cls, fc.count) == ("3", "fc", 1, 1)
    torch.testing.assert_close(fc.image, dataset[4]["image"])  # FC: the whole image
