"""UST's networks (spec ``ust`` sections 3 and 9, CPU unit tests): the Fit-in paste against the
per-sample ``interpolate`` loop, AdaIN statistics, the MLP's 4480 AdaIN parameters, D_A's 4
input channels and 3 scales, E_A^C's masked first block, Eq. 4.7's two forms, LSGAN values on
the discriminators' outputs, shapes at 256 x 192 and at the twin's 64 x 48, gradients to every
generator parameter, parameter counts written out from the layer plan, and the frozen Gram
network's weights handling.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import masks_to_boxes
from ust_tiny import GENERATOR as TINY

from lightning_modules.components.adversarial_losses import (
    lsgan_discriminator_loss,
    lsgan_generator_loss,
)
from lightning_modules.components.backbones import create_backbone
from lightning_modules.components.pretrained import WeightsNotFoundError
from lightning_modules.ust import (
    AdaIN,
    ContentEncoder,
    FitIn,
    GramVGG16,
    MultiScaleDiscriminator,
    StyleModule,
    USTGenerator,
    adain,
    gram_matrix,
    mask_boxes,
    paste_into_boxes,
    remove_item,
    symmetry_loss,
    symmetry_loss_half,
    white_fill,
)


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _box_mask(batch: int, size: tuple[int, int], boxes: list[tuple[int, int, int, int]]):
    """(B, 1, H, W) masks, each a filled box (x0, y0, x1, y1 inclusive) with a hole inside."""
    mask = torch.zeros(batch, 1, *size)
    for i, (x0, y0, x1, y1) in enumerate(boxes):
        mask[i, 0, y0 : y1 + 1, x0 : x1 + 1] = 1
        mask[i, 0, (y0 + y1) // 2, (x0 + x1) // 2] = 0  # the box is the mask's, not its fill
    return mask


def _person(batch: int = 2, size: tuple[int, int] = (64, 48), seed: int = 0):
    """Images, clothing masks (boxes) and contexts of ``batch`` made-up persons."""
    images = torch.rand(batch, 3, *size, generator=_seeded(seed)) * 2 - 1
    h, w = size
    boxes = [(w // 6 + i, h // 5, w - w // 5, h - h // 4 - i) for i in range(batch)]
    mask = _box_mask(batch, size, boxes)
    return images, mask, remove_item(images, mask)


def _paste_loop(features: torch.Tensor, boxes: torch.Tensor, size: tuple[int, int]):
    """The spec's per-sample Fit-in paste: the whole map interpolated into the box, 0 outside."""
    out = features.new_zeros(features.shape[0], features.shape[1], *size)
    for i, (x0, y0, x1, y1) in enumerate(boxes.tolist()):
        box = (y1 - y0 + 1, x1 - x0 + 1)
        resized = F.interpolate(features[i : i + 1], box, mode="bilinear", align_corners=False)
        out[i, :, y0 : y1 + 1, x0 : x1 + 1] = resized[0]
    return out


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def _conv(cin: int, cout: int, k: int) -> int:
    """Parameters of a k x k convolution with bias."""
    return cin * cout * k * k + cout


# ------------------------------------------------------------------ masks and Fit-in


def test_mask_boxes_are_torchvisions_and_an_empty_mask_takes_the_image():
    mask = (torch.rand(5, 1, 64, 48, generator=_seeded()) > 0.97).float()
    torch.testing.assert_close(mask_boxes(mask), masks_to_boxes(mask[:, 0]).long())
    mask[2] = 0
    with pytest.warns(UserWarning, match="empty clothing mask in 1 of 5"):
        boxes = mask_boxes(mask)
    assert boxes[2].tolist() == [0, 0, 47, 63]
    assert boxes.dtype == torch.long


def test_fit_in_paste_on_a_known_mask():
    """A 6 x 4 box at (x0, y0) = (5, 10) of a 24 x 16 canvas receives the whole 8 x 6 map."""
    features = torch.randn(1, 2, 8, 6, generator=_seeded())
    mask = _box_mask(1, (24, 16), [(5, 10, 8, 15)])
    boxes = mask_boxes(mask)
    assert boxes.tolist() == [[5, 10, 8, 15]]
    pasted = paste_into_boxes(features, boxes, (24, 16))
    outside = torch.ones(24, 16, dtype=torch.bool)
    outside[10:16, 5:9] = False
    assert (pasted[..., outside] == 0).all()
    expected = F.interpolate(features, (6, 4), mode="bilinear", align_corners=False)
    torch.testing.assert_close(pasted[..., 10:16, 5:9], expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("seed", range(4))
def test_batched_paste_equals_the_per_sample_loop(seed):
    """Random boxes (1-pixel ones and whole-canvas ones included), shrinking and stretching."""
    gen = _seeded(seed)
    batch, (height, width), (h, w) = 6, (64, 48), (40 + 20 * seed, 12 + 30 * seed)
    corners = torch.stack(
        [
            torch.randint(0, width, (batch,), generator=gen),
            torch.randint(0, height, (batch,), generator=gen),
        ],
        1,
    )
    ends = torch.stack(
        [
            torch.randint(0, width, (batch,), generator=gen).maximum(corners[:, 0]),
            torch.randint(0, height, (batch,), generator=gen).maximum(corners[:, 1]),
        ],
        1,
    )
    boxes = torch.cat([corners, ends], 1)
    boxes[0] = torch.tensor([7, 9, 7, 9])  # one pixel
    boxes[1] = torch.tensor([0, 0, width - 1, height - 1])  # the whole canvas
    features = torch.randn(batch, 5, h, w, generator=gen) * 3
    torch.testing.assert_close(
        paste_into_boxes(features, boxes, (height, width)),
        _paste_loop(features, boxes, (height, width)),
        rtol=0,
        atol=1e-5,
    )


def test_fit_in_output_and_gradients():
    """Fit-in reads the box and the context, lets no gradient reach the mask, and without the
    paste (the W/O Fit-in ablation) reads F alone."""
    torch.manual_seed(0)
    features = torch.randn(2, 8, 64, 48, requires_grad=True)
    images, mask, context = _person()
    mask.requires_grad_(True)
    fit_in = FitIn(feature_channels=8, hidden_channels=8)
    out = fit_in(features, mask, context)
    assert out.shape == (2, 3, 64, 48) and out.abs().max() <= 1
    out.sum().backward()
    assert mask.grad is None and features.grad.abs().sum() > 0
    with torch.no_grad():
        assert not torch.allclose(fit_in(features, mask, -context), out)
        concat = FitIn(feature_channels=8, hidden_channels=8, concat_mask=True)
        assert concat.block[0].in_channels == 8 + 3 + 1
        assert concat(features, mask, context).shape == (2, 3, 64, 48)
        plain = FitIn(feature_channels=8, hidden_channels=8, paste=False)
        assert plain.block[0].in_channels == 8
        torch.testing.assert_close(plain(features, None, None), plain(features, mask, context))
    with pytest.raises(ValueError, match="needs the target's mask and context"):
        fit_in(features, None, context)


def test_item_view_and_context():
    images, mask, context = _person()
    view = white_fill(images, mask)
    assert (view[mask.expand_as(view) == 0] == 1).all()
    assert (context[mask.expand_as(context) == 1] == 0).all()
    torch.testing.assert_close(view[mask.expand_as(view) == 1], images[mask.expand_as(view) == 1])
    with pytest.raises(ValueError, match=r"float \(B, 1, H, W\) 0/1 mask for images"):
        white_fill(images, mask[:, 0])


# ------------------------------------------------------------------ AdaIN, encoders, MLP


def test_adain_gives_each_sample_and_channel_mean_beta_and_std_gamma():
    x = torch.randn(3, 4, 16, 12, generator=_seeded()) * 5 + 2
    gamma = torch.rand(3, 4, generator=_seeded(1)) * 2 + 0.5
    beta = torch.randn(3, 4, generator=_seeded(2))
    out = adain(x, gamma, beta)
    var = x.var(dim=(2, 3), unbiased=False)
    torch.testing.assert_close(out.mean(dim=(2, 3)), beta, rtol=0, atol=1e-5)
    expected_std = gamma * torch.sqrt(var / (var + 1e-5))  # eps 1e-5 under the root
    torch.testing.assert_close(
        out.std(dim=(2, 3), unbiased=False), expected_std, rtol=1e-5, atol=1e-6
    )
    # the layer reads its (B, 2C) parameters as [beta | gamma]
    torch.testing.assert_close(AdaIN(4)(x, torch.cat([beta, gamma], 1)), out)
    with pytest.raises(ValueError, match=r"\(B, 8\) parameters \[beta \| gamma\]"):
        AdaIN(4)(x, gamma)


def test_person_encoder_first_block_is_exactly_zero_outside_the_mask():
    images, mask, _ = _person()
    encoder = ContentEncoder(base_channels=8, masked=True)
    features = encoder.first_block(images, mask)
    assert features.shape == (2, 8, 64, 48)
    outside = (mask == 0).expand_as(features)
    assert (features[outside] == 0).all()
    assert (features[~outside] != 0).any()
    assert encoder(images, mask).shape == (2, 32, 16, 12)
    with pytest.raises(ValueError, match="needs the clothing mask"):
        encoder(images)
    with pytest.raises(ValueError, match="takes no mask"):
        ContentEncoder(base_channels=8)(images, mask)


def test_mlp_gives_the_4480_adain_parameters_of_the_defaults_in_decoder_order():
    generator = USTGenerator()
    p = 4 * 2 * (2 * 256) + 2 * 128 + 2 * 64
    assert p == 4480
    assert generator.style.mlp.out_features == p
    assert generator.decoder_a.num_adain_params == generator.decoder_b.num_adain_params == p
    # split per block in forward order: 4 residual blocks (2 AdaIN x 2 x 256), Up1, Up2
    assert generator.decoder_b.body.param_sizes == [1024] * 4 + [256, 128]
    mlp = [m for m in generator.style.mlp if isinstance(m, torch.nn.Linear)]
    assert [(m.in_features, m.out_features) for m in mlp] == [(8, 256), (256, 256), (256, p)]


@pytest.mark.parametrize("style_dim", [8, 32, 128])
def test_style_codes_of_each_thesis_size(style_dim):
    module = StyleModule(num_adain_params=20, base_channels=8, style_dim=style_dim)
    codes = module(torch.zeros(2, 3, 64, 48))
    assert codes.shape == (2, style_dim)
    assert module.adain_params(codes).shape == (2, 20)


# ------------------------------------------------------------------ discriminators, LSGAN


def test_discriminator_a_reads_image_and_mask_at_three_scales():
    d_a = MultiScaleDiscriminator(mask_attention=True)
    d_b = MultiScaleDiscriminator()
    assert d_a.in_channels == 4 and d_b.in_channels == 3
    assert all(scale[0][0].in_channels == 4 for scale in d_a.scales)
    assert [c.out_channels for c in d_a.scales[0].modules() if isinstance(c, torch.nn.Conv2d)] == [
        64,
        128,
        256,
        512,
        1,
    ]
    images, mask, _ = _person(1, (256, 192))
    with torch.no_grad():
        outputs = d_a(images, mask)
    assert [o.shape for o in outputs] == [(1, 1, 16, 12), (1, 1, 8, 6), (1, 1, 4, 3)]
    with pytest.raises(ValueError, match="needs the mask"):
        d_a(images)
    small = MultiScaleDiscriminator(mask_attention=True, base_channels=8, num_layers=3)
    images, mask, _ = _person(2, (64, 48))
    assert len(small(images, mask)) == 3
    with pytest.raises(ValueError, match=r"scale 3 of 3 gets \(16, 12\) maps, too small for 4"):
        MultiScaleDiscriminator(base_channels=8)(images)


def test_lsgan_values_on_hand_made_multiscale_outputs():
    """Eq. 2.9/2.10 per scale, averaged over the 3 scales of maps of different sizes."""
    real = [torch.full((2, 1, 4, 3), 1.0), torch.full((2, 1, 2, 2), 0.5), torch.zeros(2, 1, 1, 1)]
    fake = [torch.zeros(2, 1, 4, 3), torch.full((2, 1, 2, 2), 0.5), torch.ones(2, 1, 1, 1)]
    # D: scale 1: 0 + 0; scale 2: 1/2 (1/4) + 1/2 (1/4) = 1/4; scale 3: 1/2 + 1/2 = 1
    assert lsgan_discriminator_loss(real, fake).item() == pytest.approx((0 + 0.25 + 1) / 3)
    # G on the fakes: scale 1: 1/2; scale 2: 1/2 (1/4); scale 3: 0
    assert lsgan_generator_loss(fake).item() == pytest.approx((0.5 + 0.125 + 0) / 3)


# ------------------------------------------------------------------ the generator


@pytest.mark.parametrize(
    "size,kwargs",
    [((64, 48), {}), ((256, 192), TINY)],
    ids=["64x48-defaults", "256x192-tiny-widths"],
)
def test_generator_shapes(size, kwargs):
    torch.manual_seed(0)
    generator = USTGenerator(**kwargs)
    images, mask, context = _person(2, size)
    items = torch.rand(2, 3, *size, generator=_seeded(3)) * 2 - 1
    h, w = size
    width = 4 * kwargs.get("base_channels", 64)
    with torch.no_grad():
        content_a, style_a = generator.encode_a(images, mask)
        content_b, style_b = generator.encode_b(items)
        assert content_a.shape == content_b.shape == (2, width, h // 4, w // 4)
        assert style_a.shape == style_b.shape == (2, 8)
        features = generator.decoder_a.features(
            content_b, generator.style.adain_params(style_b), mask
        )
        assert features.shape == (2, width // 4, h, w)
        for out in (generator.take_off(images, mask), generator.try_on(items, mask, context)):
            assert out.shape == (2, 3, h, w)
            assert torch.isfinite(out).all() and out.abs().max() <= 1


VARIANTS = {
    "full": {},
    "no_mask_attention": {"mask_attention": False},
    "no_fitin": {"fit_in": False},
    "no_shared_style": {"shared_style": False},
    "concat_mask": {"concat_mask": True},
}


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_gradients_reach_every_generator_parameter(variant):
    """Take-off, try-on and both cycles, as a training step composes them."""
    torch.manual_seed(0)
    generator = USTGenerator(**TINY, **VARIANTS[variant])
    images, mask, context = _person()
    items = torch.rand(2, 3, 64, 48, generator=_seeded(3)) * 2 - 1
    take_off = generator.take_off(images, mask)  # I_AB
    try_on = generator.try_on(items, mask, context)  # I_BA
    back_a = generator.decode_a(*generator.encode_b(take_off), mask, context)  # I_ABA
    back_b = generator.decode_b(*generator.encode_a(try_on, mask))  # I_BAB
    loss = sum(x.square().mean() for x in (take_off, try_on, back_a, back_b))
    loss.backward()
    missing = [n for n, p in generator.named_parameters() if p.grad is None]
    assert not missing
    assert all(torch.isfinite(p.grad).all() for p in generator.parameters())
    if variant == "no_shared_style":
        assert not hasattr(generator, "style")
        assert generator.style_module("a") is not generator.style_module("b")
    if variant == "no_mask_attention":
        assert generator.decoder_a.attend is None
        # G_A then reads no mask before Fit-in
        _, params = generator.encode_b(items)
        params = generator.style_module("a").adain_params(params)
        content = generator.content_b(items)
        torch.testing.assert_close(
            generator.decoder_a.features(content, params, None),
            generator.decoder_a.features(content, params, mask),
        )


def test_default_parameter_counts_follow_the_layer_plan(capsys):
    """MUNIT-sized networks, counted from the spec's layer plan (conv = k^2 in out + out)."""
    generator = USTGenerator()
    content = (
        _conv(3, 64, 7)
        + _conv(64, 128, 4)
        + _conv(128, 256, 4)
        + 4 * 2 * _conv(256, 256, 3)  # 4 residual blocks
    )
    style_encoder = (
        _conv(3, 64, 7)
        + _conv(64, 128, 4)
        + _conv(128, 256, 4)
        + 2 * _conv(256, 256, 4)
        + _conv(256, 8, 1)
    )
    mlp = (8 * 256 + 256) + (256 * 256 + 256) + (256 * 4480 + 4480)
    body = 4 * 2 * _conv(256, 256, 3) + _conv(256, 128, 5) + _conv(128, 64, 5)
    decoder_b = body + _conv(64, 3, 7)
    decoder_a = _conv(257, 256, 3) + body + _conv(67, 64, 3) + _conv(64, 3, 7)
    counts = {name: _count(child) for name, child in generator.named_children()}
    assert counts == {
        "content_a": content,
        "content_b": content,
        "decoder_a": decoder_a,
        "decoder_b": decoder_b,
        "style": style_encoder + mlp,
    }
    patch = _conv(4, 64, 4) + _conv(64, 128, 4) + _conv(128, 256, 4) + _conv(256, 512, 4)
    assert _count(MultiScaleDiscriminator(mask_attention=True)) == 3 * (patch + _conv(512, 1, 1))
    unshared = USTGenerator(shared_style=False)
    assert _count(unshared) == _count(generator) + style_encoder + mlp
    with capsys.disabled():
        print(f"\nUST generator parameters: {_count(generator):,} {counts}")
    assert "TryOnDecoder" in repr(generator) and "FitIn" in repr(generator)


def test_generator_starts_from_kaiming_normal_weights():
    generator = USTGenerator()
    conv = generator.content_b.res[0].body[0][0]  # 256 -> 256, 3 x 3
    assert conv.bias.abs().max() == 0
    assert conv.weight.std().item() == pytest.approx(math.sqrt(2 / (256 * 9)), rel=0.02)


# ------------------------------------------------------------------ Eq. 4.7


@pytest.mark.parametrize("width", [48, 47])
def test_symmetry_double_sum_equals_the_flip_form(width):
    images = torch.randn(3, 3, 16, width, generator=_seeded())
    torch.testing.assert_close(symmetry_loss_half(images), symmetry_loss(images))
    # the printed double sum, term by term, for the first image
    x, total = images[0], 0.0
    for w in range(width // 2):
        for h in range(16):
            total += (x[:, h, w] - x[:, h, width - 1 - w]).abs().sum().item()
    first = symmetry_loss(images[:1]).item()
    assert first == pytest.approx(total / (width / 2 * 16), rel=1e-5)
    mirrored = torch.cat([images[..., : width // 2], images[..., : (width + 1) // 2].flip(-1)], -1)
    assert symmetry_loss(mirrored).item() == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------ Gram (Eq. 4.6)


@pytest.fixture(scope="module")
def gram_network():
    torch.manual_seed(0)
    return GramVGG16(trunk_weights=None, random_trunk=True)


def test_gram_taps_relu_after_the_first_conv_of_each_block(gram_network):
    convs = 0
    for block, width, convs_before in zip(
        gram_network.blocks, (64, 128, 256, 512, 512), (1, 3, 5, 8, 11), strict=True
    ):
        layers = list(block)
        assert isinstance(layers[-1], torch.nn.ReLU) and layers[-2].out_channels == width
        convs += sum(isinstance(m, torch.nn.Conv2d) for m in layers)
        assert convs == convs_before
    x = torch.rand(2, 3, 64, 48, generator=_seeded()) * 2 - 1
    grams = gram_network(x)
    assert [g.shape for g in grams] == [(2, c, c) for c in (64, 128, 256, 512, 512)]
    # layer 1 by hand: [-1, 1] -> [0, 1] -> ImageNet normalisation -> relu1_1 -> F F^T / (C H W)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    feats = torch.relu(gram_network.blocks[0][0](((x + 1) / 2 - mean) / std))
    expected = torch.einsum("bchw,bdhw->bcd", feats, feats) / (64 * 64 * 48)
    torch.testing.assert_close(grams[0], expected)
    torch.testing.assert_close(gram_matrix(feats), expected)


def test_gram_distance_trains_the_images_only(gram_network):
    x = (torch.rand(1, 3, 64, 48, generator=_seeded()) * 2 - 1).requires_grad_(True)
    y = torch.rand(1, 3, 64, 48, generator=_seeded(1)) * 2 - 1
    assert gram_network.distance(x, x.detach()).item() == 0
    loss = gram_network.distance(x, y)
    loss.backward()
    assert loss.item() > 0 and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in gram_network.parameters())


def test_gram_weights_are_never_silently_random(tmp_path, monkeypatch):
    monkeypatch.setenv("LATENTLAB_WEIGHTS", str(tmp_path))
    with pytest.raises(
        WeightsNotFoundError, match=r"'vgg16' \(vgg16-397923af.pth\) not found.*NAMES=vgg16"
    ):
        GramVGG16()
    with pytest.raises(ValueError, match=r"needs trunk_weights: 'vgg16'.*NAMES=vgg16"):
        GramVGG16(trunk_weights=None)
    with pytest.raises(ValueError, match="not both"):
        GramVGG16(random_trunk=True)


def test_gram_loads_a_torchvision_vgg16_file(tmp_path):
    torch.manual_seed(1)
    trunk = create_backbone("torchvision/vgg16")  # the file's layout: features.N.weight ...
    path = tmp_path / "my-vgg16.pth"
    torch.save(trunk.state_dict(), path)
    network = GramVGG16(trunk_weights=str(path))
    torch.testing.assert_close(network.blocks[4][-2].weight, trunk.features[24].weight)
