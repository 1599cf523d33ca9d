"""VEBI's heatmap walk, its saliency baselines and the artefact score (spec sections 3, 6, 9).

References are written apart from the code under test: guided backprop by ReLU backward hooks
that clamp the gradient (the textbook way), the resampled stride-1 backward by the spec's literal
recipe (a stride-1 clone and ``torch.autograd.grad``), Grad-CAM on hand-chosen weights, the
Grad-CAM++ alphas by loops over the printed formula in numpy.
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from lightning_modules.vebi.artefacts import artefact_score, stride_bins, stride_lattice
from lightning_modules.vebi.deconv import (
    deconv_heatmaps,
    deconv_signal,
    forward_records,
    module_backward,
    to_heatmap,
)
from lightning_modules.vebi.module_walk import ModuleWalk
from lightning_modules.vebi.nets import an8flower_cnn, mnist_lenet
from lightning_modules.vebi.saliency_baselines import (
    CLASS_HEATMAPS,
    FILTER_HEATMAPS,
    gradcam,
    gradcam_pp,
    gradcam_pp_alphas,
    guided_backprop,
    upsampled_activation,
)


def _smooth_images(count: int, size: int, seed: int) -> torch.Tensor:
    """Low-pass random RGB images (bicubic 4x upsampling of noise), closer to photos than noise."""
    generator = torch.Generator().manual_seed(seed)
    noise = torch.randn(count, 3, size // 4, size // 4, generator=generator)
    return F.interpolate(noise, size=size, mode="bicubic", align_corners=False)


def _net(build, seed: int, *args) -> nn.Sequential:
    torch.manual_seed(seed)
    return build(*args).eval()


# --- the resampled stride-1 backward -------------------------------------------------------------


def _spec_recipe(module: nn.Module, x_in: torch.Tensor, signal: torch.Tensor) -> torch.Tensor:
    """Spec section 3: nearest-resample R to H1 + 2O - M + 1, then autograd through a stride-1
    clone of the module (sharing its weights) run on the stored input."""
    kernel, padding = (
        nn.modules.utils._pair(module.kernel_size),
        nn.modules.utils._pair(module.padding),
    )
    size = [h + 2 * o - m + 1 for h, o, m in zip(x_in.shape[-2:], padding, kernel, strict=True)]
    clone = copy.copy(module)
    clone.stride = (1, 1) if isinstance(module, nn.Conv2d) else 1
    x = x_in.clone().requires_grad_(True)
    out = clone(x)
    assert list(out.shape[-2:]) == size
    resampled = F.interpolate(signal, size=size, mode="nearest")
    (grad,) = torch.autograd.grad(out, x, grad_outputs=resampled)
    return grad


def _random_layer(rng: np.random.Generator, kind: str) -> tuple[nn.Module, torch.Tensor]:
    m_h, m_w = (int(v) for v in rng.integers(1, 8, size=2))
    stride = int(rng.integers(2, 5))
    pad_h, pad_w = int(rng.integers(0, m_h // 2 + 1)), int(rng.integers(0, m_w // 2 + 1))
    h1, w1 = int(rng.integers(max(m_h, 3), 40)), int(rng.integers(max(m_w, 3), 40))
    if kind == "conv":
        layer = nn.Conv2d(3, 4, (m_h, m_w), stride=stride, padding=(pad_h, pad_w))
    else:
        layer = nn.MaxPool2d((m_h, m_w), stride, (pad_h, pad_w), ceil_mode=bool(rng.integers(2)))
    return layer, torch.randn(2, 3, h1, w1, generator=torch.Generator().manual_seed(int(h1 * w1)))


@pytest.mark.parametrize("kind", ["conv", "max_pool"])
def test_resampled_backward_returns_exactly_the_input_size(kind):
    rng = np.random.default_rng(7)
    for _ in range(25):
        layer, x_in = _random_layer(rng, kind)
        signal = torch.rand_like(layer(x_in))
        resampled = module_backward(layer, x_in, signal, resample=True)
        assert resampled.shape == x_in.shape, layer
        assert torch.allclose(resampled, _spec_recipe(layer, x_in, signal), atol=1e-5), layer
        plain = module_backward(layer, x_in, signal, resample=False)
        x = x_in.clone().requires_grad_(True)
        (gradient,) = torch.autograd.grad(layer(x), x, grad_outputs=signal)
        assert torch.allclose(plain, gradient, atol=1e-5), layer


def test_resampled_avg_pool_follows_the_spec_recipe():
    pool = nn.AvgPool2d(3, 2, 1)
    x_in = torch.randn(2, 4, 15, 12)
    signal = torch.rand_like(pool(x_in))
    assert torch.allclose(
        module_backward(pool, x_in, signal, resample=True), _spec_recipe(pool, x_in, signal)
    )


# --- the walk without resampling is guided backprop ---------------------------------------------


def _guided_backprop_reference(prefix: nn.Sequential, images, filters, one_hot=False):
    """Autograd through ``prefix`` with every ReLU's input gradient clamped at 0, started from the
    prefix output with all channels but ``filters[b]`` zeroed (or from a one-hot at them)."""

    def clamp(module, grad_input, grad_output):
        return (grad_input[0].clamp(min=0),)

    hooks = [m.register_full_backward_hook(clamp) for m in prefix if isinstance(m, nn.ReLU)]
    try:
        x = images.clone().requires_grad_(True)
        out = prefix(x)
        keep = torch.zeros_like(out)
        keep[torch.arange(len(filters)), filters] = 1
        start = keep if one_hot else out.detach() * keep
        (gradient,) = torch.autograd.grad(out, x, grad_outputs=start)
    finally:
        for hook in hooks:
            hook.remove()
    return gradient


@pytest.mark.parametrize(
    "build, args, size, channels, read_outs",
    [
        (
            mnist_lenet,
            (10,),
            28,
            1,
            {"conv1": "relu1", "conv2": "relu2", "fc3": "relu3", "fc4": "fc4"},
        ),
        (
            an8flower_cnn,
            (6,),
            64,
            3,
            {
                "conv1": "relu1",
                "conv2": "relu2",
                "pool2": "pool2",
                "conv3": "relu3",
                "fc4": "relu4",
            },
        ),
    ],
)
def test_walk_without_resampling_equals_guided_backprop(build, args, size, channels, read_outs):
    net = _net(build, 0, *args)
    walk = ModuleWalk.of(net)
    images = torch.randn(3, channels, size, size, generator=torch.Generator().manual_seed(1))
    names = [name for name, _ in net.named_children()]
    for layer, read_out in read_outs.items():
        prefix = net[: names.index(read_out) + 1]
        width = prefix(images).shape[1]
        filters = torch.tensor([0, width // 2, width - 1])
        walked = deconv_signal(walk, images, layer, filters, resample=False)
        reference = _guided_backprop_reference(prefix, images, filters)
        assert reference.abs().max() > 0, layer
        assert (walked - reference).abs().max() < 1e-5, layer


def test_several_filters_per_image_equal_separate_walks():
    walk = ModuleWalk.of(_net(an8flower_cnn, 0, 6))
    images = _smooth_images(2, 64, seed=3)
    table = torch.tensor([[1, 5, 9], [2, 2, 30]])
    together = deconv_heatmaps(walk, images, "conv3", table)
    assert together.shape == (2, 3, 64, 64)
    for k in range(3):
        alone = deconv_heatmaps(walk, images, "conv3", table[:, k])
        assert torch.allclose(together[:, k], alone, atol=1e-6)
    same = deconv_heatmaps(walk, images, "conv3", 2)
    assert torch.allclose(same, deconv_heatmaps(walk, images, "conv3", torch.tensor([2, 2])))


def test_heatmap_of_a_zero_signal_is_zero():
    maps = to_heatmap(torch.zeros(2, 3, 5, 4))
    assert maps.shape == (2, 5, 4) and maps.abs().max() == 0


# --- the module list ----------------------------------------------------------------------------


def test_alexnet_walk_replays_the_net_and_returns_input_size_maps():
    torch.manual_seed(0)
    net = torchvision.models.alexnet(weights=None).eval()
    walk = ModuleWalk.of(net)
    assert walk.names[12:16] == ("features.12", "avgpool", "flatten", "classifier.0")
    images = _smooth_images(2, 224, seed=0)
    assert torch.allclose(nn.Sequential(*walk.modules)(images), net(images), atol=1e-5)
    assert walk.readout("features.0") == walk.index("features.1")
    assert walk.readout("classifier.4") == walk.index("classifier.5")
    for layer in ("features.0", "classifier.4"):
        activation = forward_records(walk.modules[: walk.readout(layer) + 1], images)[-1]
        filters = (
            activation.flatten(2).sum(-1).argmax(1)
            if activation.dim() == 4
            else activation.argmax(1)
        )
        maps = deconv_heatmaps(walk, images, layer, filters)
        assert maps.shape == (2, 224, 224)
        assert torch.allclose(maps.amax((1, 2)), torch.ones(2))


def test_vgg_layout_inserts_the_flatten():
    with torch.device("meta"):  # the layout only: no 130M weights to initialise
        net = torchvision.models.vgg11(weights=None).eval()
        walk = ModuleWalk.of(net)
        assert walk.names[-9:-6] == ("avgpool", "flatten", "classifier.0")
        assert nn.Sequential(*walk.modules)(torch.empty(2, 3, 32, 32)).shape == (2, 1000)


def test_unsupported_modules_are_named():
    with pytest.raises(TypeError, match="ResNet"):
        ModuleWalk.of(torchvision.models.resnet18(weights=None))
    block = torchvision.models.resnet.BasicBlock(4, 4)
    with pytest.raises(TypeError, match=r"1 \(BasicBlock\)"):
        ModuleWalk.of(nn.Sequential(nn.Conv2d(3, 4, 3), block))
    with pytest.raises(ValueError, match="train mode"):
        ModuleWalk.of(nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)))


def test_batch_norm_eval_and_readout_after_it():
    net = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU()).eval()
    net[1].running_var.uniform_(0.5, 2.0)
    net[1].weight.data.uniform_(-1, 1)
    walk = ModuleWalk.of(net)
    assert walk.readout(0) == 2
    images = torch.randn(2, 3, 8, 8)
    reference = _guided_backprop_reference(net, images, torch.tensor([1, 3]))
    walked = deconv_signal(walk, images, 0, torch.tensor([1, 3]), resample=False)
    assert (walked - reference).abs().max() < 1e-5


def test_nets_match_the_spec_sizes():
    assert mnist_lenet()(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert an8flower_cnn(12)(torch.zeros(2, 3, 64, 64)).shape == (2, 12)
    assert an8flower_cnn(6, image_size=128)(torch.zeros(1, 3, 128, 128)).shape == (1, 6)
    assert an8flower_cnn(6).fc4.in_features == 4096
    assert ModuleWalk.of(an8flower_cnn(6).eval()).jump("conv3") == 8


# --- baselines ----------------------------------------------------------------------------------


def _tiny_cam_net(class_weights: torch.Tensor) -> nn.Sequential:
    """1x1 conv, weights (1, -1), no bias -> ReLU -> flatten -> Linear(8 -> 2) without bias."""
    conv = nn.Conv2d(1, 2, 1, bias=False)
    conv.weight.data = torch.tensor([1.0, -1.0]).view(2, 1, 1, 1)
    head = nn.Linear(8, 2, bias=False)
    head.weight.data = class_weights
    return nn.Sequential(conv, nn.ReLU(), nn.Flatten(), head).eval()


def test_gradcam_by_hand():
    # Head weights for class 1 all 1/8 on channel 0 and 1/2 on channel 1: dS/dA is (1/8, 1/2)
    # everywhere, so w = (1/8, 1/2). With image [[1, -2], [3, 4]]: A_0 = relu(x) = [[1, 0], [3, 4]],
    # A_1 = relu(-x) = [[0, 2], [0, 0]], map = A_0 / 8 + A_1 / 2 = [[1/8, 1], [3/8, 1/2]], max 1.
    weights = torch.stack(
        [torch.full((8,), -1.0), torch.cat([torch.full((4,), 0.125), torch.full((4,), 0.5)])]
    )
    walk = ModuleWalk.of(_tiny_cam_net(weights))
    image = torch.tensor([[1.0, -2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    expected = torch.tensor([[[0.125, 1.0], [0.375, 0.5]]])
    assert torch.allclose(gradcam(walk, image, torch.tensor([1])), expected)
    # Class 0 has negative weights on every activation: the ReLU leaves nothing.
    assert gradcam(walk, image, torch.tensor([0])).abs().max() == 0


def test_gradcam_pp_alphas_follow_the_printed_formula():
    generator = torch.Generator().manual_seed(0)
    activation = torch.rand(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    gradient = torch.randn(2, 3, 4, 5, generator=generator, dtype=torch.float64)
    gradient[0, 0] = 0  # a channel with no gradient: alpha is 0, not NaN
    a, g = activation.numpy(), gradient.numpy()
    expected = np.zeros_like(a)
    for b, k, i, j in np.ndindex(*a.shape):
        numerator = g[b, k, i, j] ** 2
        denominator = 2 * g[b, k, i, j] ** 2 + a[b, k].sum() * g[b, k, i, j] ** 3
        expected[b, k, i, j] = numerator / denominator if denominator != 0 else 0.0
    np.testing.assert_allclose(
        gradcam_pp_alphas(activation, gradient).numpy(), expected, rtol=1e-12
    )


def test_gradcam_pp_on_the_tiny_net_matches_numpy():
    generator = torch.Generator().manual_seed(1)
    weights = torch.randn(2, 8, generator=generator)
    walk = ModuleWalk.of(_tiny_cam_net(weights))
    image = torch.tensor([[1.0, -2.0], [3.0, 4.0]]).view(1, 1, 2, 2)
    a = np.maximum(np.array([1.0, -1.0])[:, None, None] * image.numpy()[0], 0)  # (2, 2, 2)
    g = weights[1].numpy().reshape(2, 2, 2).astype(np.float64)
    alphas = g**2 / (2 * g**2 + a.sum((1, 2), keepdims=True) * g**3)
    cam = np.maximum(((alphas * np.maximum(g, 0)).sum((1, 2))[:, None, None] * a).sum(0), 0)
    expected = cam / cam.max()
    got = gradcam_pp(walk, image, torch.tensor([1]))[0].numpy()
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_guided_backprop_is_the_hooked_gradient_of_the_class_score():
    net = _net(an8flower_cnn, 0, 6)
    images = _smooth_images(2, 64, seed=5)
    classes = torch.tensor([1, 4])
    gradient = _guided_backprop_reference(net, images, classes, one_hot=True)
    expected = gradient.abs().sum(1)
    expected = expected / expected.flatten(1).amax(1).view(2, 1, 1)
    assert torch.allclose(guided_backprop(ModuleWalk.of(net), images, classes), expected, atol=1e-5)


def test_upsampled_activation_of_a_full_size_layer_is_the_activation():
    net = _net(an8flower_cnn, 0, 6)
    images = _smooth_images(2, 64, seed=6)
    activation = net.relu1(net.conv1(images)).detach()[torch.arange(2), torch.tensor([3, 8])]
    expected = activation / activation.flatten(1).amax(1).view(2, 1, 1)
    got = upsampled_activation(ModuleWalk.of(net), images, "conv1", torch.tensor([3, 8]))
    assert torch.allclose(got, expected, atol=1e-6)


def test_every_baseline_returns_unit_maps_of_the_input_size():
    walk = ModuleWalk.of(_net(an8flower_cnn, 0, 6))
    images = _smooth_images(3, 64, seed=2)
    for name, method in FILTER_HEATMAPS.items():
        maps = method(walk, images, "conv2", torch.tensor([0, 7, 13]))
        assert maps.shape == (3, 64, 64), name
        assert maps.min() >= 0 and torch.allclose(maps.amax((1, 2)), torch.ones(3)), name
    for name, method in CLASS_HEATMAPS.items():
        maps = method(walk, images)
        assert maps.shape == (3, 64, 64), name
        assert maps.min() >= 0 and maps.max() <= 1, name
    with pytest.raises(ValueError, match="conv layer"):
        upsampled_activation(walk, images, "fc4", 0)


# --- the artefact score -------------------------------------------------------------------------


def test_stride_bins_by_hand():
    assert stride_bins(64, 4).tolist() == [0, 16, 32, 48]
    assert stride_bins(10, 4).tolist() == [0, 2, 5, 8]  # 2.5 and 7.5 round half to even
    lattice = stride_lattice(8, 6, 2)
    assert sorted(map(tuple, lattice.nonzero().tolist())) == [(0, 3), (4, 0), (4, 3)]


def test_artefact_score_of_a_checkerboard_and_of_a_blob():
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    checkerboard = ((rows + cols) % 2).view(1, 64, 64)
    blob = torch.exp(-((rows - 30) ** 2 + (cols - 36) ** 2) / (2 * 6.0**2)).view(1, 64, 64)
    stripes = (torch.cos(2 * torch.pi * cols / 4) + 1).view(1, 64, 64)  # period 4
    assert artefact_score(checkerboard, 2).item() == pytest.approx(1.0, abs=1e-9)
    assert artefact_score(blob, 2).item() < 1e-6
    assert artefact_score(blob, 8).item() < 1e-3
    assert artefact_score(stripes, 4).item() == pytest.approx(1.0, abs=1e-9)
    assert artefact_score(stripes, 2).item() < 1e-9
    assert artefact_score(torch.zeros(2, 8, 8), 2).tolist() == [0.0, 0.0]
    assert artefact_score(torch.full((1, 8, 8), 3.0), 2).item() == 0.0


@pytest.mark.parametrize("layer", ["conv2", "conv3"])
def test_resampling_lowers_the_artefact_score_below_conv3(layer):
    """On seeded random-init an8Flower nets and low-pass random images, the top filter's map has
    a lower score with the fix than Deconv+GB on most images. (On white-noise images a random
    net's maps are themselves white and neither method wins; conv1 has no strided layer below.)"""
    wins = []
    for seed in range(4):
        walk = ModuleWalk.of(_net(an8flower_cnn, seed, 6))
        images = _smooth_images(6, 64, seed=100 + seed)
        activation = forward_records(walk.modules[: walk.readout(layer) + 1], images)[-1]
        top = activation.flatten(2).norm(dim=2).argmax(1)
        stride = walk.jump(layer)
        ours = artefact_score(deconv_heatmaps(walk, images, layer, top), stride)
        plain = artefact_score(deconv_heatmaps(walk, images, layer, top, resample=False), stride)
        wins.append(ours < plain)
    assert torch.cat(wins).float().mean() >= 0.75


_HUES = torch.tensor([[1, 0, 0], [0, 1, 0], [0, 0, 1], [1, 1, 0], [1, 0, 1], [0, 1, 1]]) * 2.0 - 1


def _coloured_discs(count: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """A toy stand-in for an8Flower (whose generator lives elsewhere): a disc of one of 6 hues,
    radius 6-12 px, anywhere on a smooth grey background at 64 px; the label is the hue."""
    noise = torch.randn(count, 1, 8, 8, generator=generator)
    background = F.interpolate(noise, size=64, mode="bicubic", align_corners=False)
    labels = torch.randint(0, 6, (count,), generator=generator)
    centre_y, centre_x = torch.rand(2, count, 1, 1, generator=generator) * 40 + 12
    radius = torch.rand(count, 1, 1, generator=generator) * 6 + 6
    rows, cols = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    disc = ((rows - centre_y) ** 2 + (cols - centre_x) ** 2 < radius**2).float()[:, None]
    colour = _HUES[labels][:, :, None, None]
    return 0.3 * background.expand(-1, 3, -1, -1) * (1 - disc) + disc * colour, labels


@pytest.mark.slow
def test_resampling_lowers_the_artefact_score_on_a_trained_net():
    """Spec section 9 (Artefacts) on a briefly trained an8Flower CNN (about a minute on one
    core): the top filter's map of conv2 and conv3 scores lower with the fix on >= 90% of images."""
    torch.manual_seed(0)
    net = an8flower_cnn(6)
    optimizer = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    for _ in range(150):
        images, labels = _coloured_discs(32, generator)
        loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    net.eval()
    images, labels = _coloured_discs(24, torch.Generator().manual_seed(99))
    with torch.no_grad():
        assert (net(images).argmax(1) == labels).float().mean() >= 0.9  # the net has learnt
    walk = ModuleWalk.of(net)
    for layer in ("conv2", "conv3"):
        activation = forward_records(walk.modules[: walk.readout(layer) + 1], images)[-1]
        top = activation.flatten(2).norm(dim=2).argmax(1)
        stride = walk.jump(layer)
        ours = artefact_score(deconv_heatmaps(walk, images, layer, top), stride)
        plain = artefact_score(deconv_heatmaps(walk, images, layer, top, resample=False), stride)
        assert (ours < plain).float().mean() >= 0.9, layer


# --- the GPU --------------------------------------------------------------------------------------


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_walk_on_cuda_equals_cpu():
    net = _net(an8flower_cnn, 0, 6)
    images = _smooth_images(4, 64, seed=9)
    table = torch.tensor([[0, 5], [1, 9], [2, 20], [3, 33]])
    for resample in (True, False):
        cpu = deconv_signal(ModuleWalk.of(net), images, "conv3", table, resample)
        cuda = deconv_signal(
            ModuleWalk.of(net.cuda()), images.cuda(), "conv3", table.cuda(), resample
        )
        net.cpu()
        assert torch.allclose(cuda.cpu(), cpu, atol=1e-4, rtol=1e-4)
