"""The shared GAN networks of ``lightning_modules/components/``: ``ResNetEncoder``,
``ResNetGenerator``, ``LatentDiscriminator`` and ``DCGANDiscriminator`` (spec ``disentangle``
section 3). Layer plans are checked against the spec's numbers written out here, the encoder
against torchvision's ResNet-18, and every network for shapes, NaNs and gradients (timm style).
"""

from __future__ import annotations

import math

import pytest
import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock

from lightning_modules.components.dcgan_discriminator import DCGANDiscriminator
from lightning_modules.components.latent_discriminator import LatentDiscriminator
from lightning_modules.components.resnet_encoder import ResNetEncoder
from lightning_modules.components.resnet_generator import ResNetGenerator, UpsamplingBlock


def _seeded(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _stage_outputs(generator: ResNetGenerator, z: torch.Tensor) -> list[tuple[int, ...]]:
    """(C, H, W) of each upsampling stage's output, read with forward hooks."""
    shapes: list[tuple[int, ...]] = []
    hooks = [
        stage.register_forward_hook(lambda _m, _i, out: shapes.append(tuple(out.shape[1:])))
        for stage in generator.stages
    ]
    with torch.no_grad():
        generator.eval()(z)
    for hook in hooks:
        hook.remove()
    return shapes


# ---------------------------------------------------------------- ResNetEncoder


@pytest.mark.parametrize("size", [32, 64, 128])
def test_encoder_codes_any_size_from_32_px(size):
    encoder = ResNetEncoder(out_features=10, base_channels=8)
    codes = encoder(torch.randn(2, 3, size, size, generator=_seeded()))
    assert codes.shape == (2, 10)
    assert torch.isfinite(codes).all()
    assert encoder.num_features == 64  # 8b


def test_default_encoder_at_64_px_and_one_channel_inputs():
    assert ResNetEncoder()(torch.randn(2, 3, 64, 64, generator=_seeded())).shape == (2, 99)
    gray = ResNetEncoder(5, base_channels=8, in_channels=1)
    assert gray.conv1.weight.shape == (8, 1, 7, 7)
    assert gray(torch.randn(2, 1, 32, 32, generator=_seeded())).shape == (2, 5)


def test_encoder_is_torchvision_resnet18_at_base_64():
    torch.manual_seed(0)
    reference = torchvision.models.resnet18(weights=None, num_classes=99).eval()
    encoder = ResNetEncoder(out_features=99).eval()
    count = sum(p.numel() for p in encoder.parameters())
    assert count == sum(p.numel() for p in reference.parameters())
    # 11,227,812 = 11,176,512 (resnet18 without fc, a published count) + 512 * 99 + 99
    assert count == 11_176_512 + 512 * 99 + 99
    ours, theirs = encoder.state_dict(), reference.state_dict()
    assert list(ours) == list(theirs)  # same names, same order, buffers included
    assert {k: v.shape for k, v in ours.items()} == {k: v.shape for k, v in theirs.items()}

    with torch.no_grad():  # make the BN running statistics non-trivial before copying
        for name, buffer in reference.named_buffers():
            if name.endswith(("running_mean", "running_var")):
                buffer.uniform_(0.5, 1.5)
    encoder.load_state_dict(reference.state_dict())
    images = torch.randn(2, 3, 64, 64, generator=_seeded(1))
    with torch.no_grad():
        assert torch.equal(encoder(images), reference(images))


@pytest.mark.parametrize(("stem", "first", "last"), [("imagenet", 8, 1), ("cifar", 32, 4)])
def test_encoder_stem_sets_the_stage_maps(stem, first, last):
    """At 32 px the ImageNet stem hands the first stage an 8x8 map (the last stage 1x1), the
    CIFAR stem (3x3/1 conv, no pool) a 32x32 map (4x4): the paper's 128 px pyramid."""
    encoder = ResNetEncoder(10, base_channels=8, stem=stem).eval()
    sizes = {}
    for name in ("layer1", "layer4"):
        getattr(encoder, name).register_forward_hook(
            lambda _m, _i, out, name=name: sizes.__setitem__(name, tuple(out.shape[-2:]))
        )
    with torch.no_grad():
        assert encoder(torch.randn(2, 3, 32, 32, generator=_seeded())).shape == (2, 10)
    assert sizes == {"layer1": (first, first), "layer4": (last, last)}
    kernel = 7 if stem == "imagenet" else 3
    assert encoder.conv1.weight.shape == (8, 3, kernel, kernel)
    with pytest.raises(ValueError, match="stem must be one of"):
        ResNetEncoder(10, stem="vit")


def test_encoder_uses_torchvision_init():
    torch.manual_seed(0)
    encoder = ResNetEncoder()
    # Kaiming normal, fan_out, ReLU: conv1 is (64, 3, 7, 7), fan_out = 64 * 49 = 3136,
    # std = sqrt(2 / 3136) = 0.02525; 9408 samples give the std to about 1 %.
    assert encoder.conv1.weight.std().item() == pytest.approx(math.sqrt(2 / 3136), rel=0.05)
    # layer3.0.conv2 is (256, 256, 3, 3): fan_out = 256 * 9, std = sqrt(2 / 2304) = 0.02946
    w = encoder.layer3[0].conv2.weight
    assert w.std().item() == pytest.approx(math.sqrt(2 / 2304), rel=0.05)
    for module in encoder.modules():
        if isinstance(module, nn.BatchNorm2d):
            assert torch.equal(module.weight, torch.ones_like(module.weight))
            assert torch.equal(module.bias, torch.zeros_like(module.bias))


# ---------------------------------------------------------------- ResNetGenerator


@pytest.mark.parametrize("size", [16, 32, 64, 128])
def test_generator_images_of_each_size_lie_in_minus_one_one(size):
    generator = ResNetGenerator(latent_dim=10, image_size=size, base_channels=8)
    images = generator(torch.randn(2, 10, generator=_seeded()))
    assert images.shape == (2, 3, size, size)
    assert torch.isfinite(images).all()
    assert images.min() >= -1 and images.max() <= 1
    assert images.std() > 0  # not a constant image


def test_default_generator_at_64_px():
    generator = ResNetGenerator(image_size=64)
    images = generator(torch.randn(2, 99, generator=_seeded()))
    assert images.shape == (2, 3, 64, 64)
    assert images.abs().max() <= 1


def test_generator_layer_plan_at_128_px_is_the_spec():
    generator = ResNetGenerator()  # 99 -> 3 x 128 x 128, b = 64
    assert (generator.project.in_features, generator.project.out_features) == (99, 512)
    deconvs = [m for m in generator.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert all(m.kernel_size == (4, 4) for m in deconvs)
    # stem 1 + 4 stages x (main + shortcut) + final 1 = 10, in module order
    plan = [(m.in_channels, m.out_channels, m.stride[0], m.padding[0]) for m in deconvs]
    assert plan == [
        (512, 512, 1, 0),  # 1x1 -> 4x4
        (512, 256, 2, 1), (512, 256, 2, 1),  # 256 @ 8
        (256, 128, 2, 1), (256, 128, 2, 1),  # 128 @ 16
        (128, 64, 2, 1), (128, 64, 2, 1),  # 64 @ 32
        (64, 64, 2, 1), (64, 64, 2, 1),  # 64 @ 64
        (64, 3, 2, 1),  # 3 @ 128
    ]  # fmt: skip
    assert len(generator.stages) == 4
    for stage in generator.stages:
        first, second = stage
        assert isinstance(first, UpsamplingBlock) and type(second) is BasicBlock
        conv = first.main[3]
        assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3)
        assert second.downsample is None and second.stride == 1
    assert isinstance(generator.to_image[-1], nn.Tanh)


@pytest.mark.parametrize(
    ("size", "stages"),
    [
        (16, [(32, 8, 8)]),  # 4b @ 8 with b = 8
        (32, [(32, 8, 8), (16, 16, 16)]),
        (64, [(32, 8, 8), (16, 16, 16), (8, 32, 32)]),
        (128, [(32, 8, 8), (16, 16, 16), (8, 32, 32), (8, 64, 64)]),
        (256, [(32, 8, 8), (16, 16, 16), (8, 32, 32), (8, 64, 64), (8, 128, 128)]),
    ],
)
def test_generator_drops_stages_from_the_end_for_small_images(size, stages):
    generator = ResNetGenerator(latent_dim=4, image_size=size, base_channels=8)
    assert _stage_outputs(generator, torch.randn(1, 4, generator=_seeded())) == stages


@pytest.mark.parametrize("size", [0, 8, 48, 100, 127])
def test_generator_refuses_sizes_that_are_not_powers_of_two_from_16(size):
    with pytest.raises(ValueError, match=f"power of two >= 16, got {size}"):
        ResNetGenerator(image_size=size)


# ---------------------------------------------------------------- LatentDiscriminator


def test_latent_discriminator_is_three_hidden_layers_of_1000():
    critic = LatentDiscriminator()
    kinds = [type(m) for m in critic.hidden]
    assert kinds == [nn.Linear, nn.BatchNorm1d, nn.ReLU, nn.Dropout] * 3
    linears = [m for m in critic.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [
        (99, 1000), (1000, 1000), (1000, 1000), (1000, 1)
    ]  # fmt: skip
    assert [m.num_features for m in critic.modules() if isinstance(m, nn.BatchNorm1d)] == [1000] * 3
    assert [m.p for m in critic.modules() if isinstance(m, nn.Dropout)] == [0.2] * 3


def test_latent_discriminator_dropout_only_acts_in_training():
    critic = LatentDiscriminator(latent_dim=8, hidden=64)
    z = torch.randn(16, 8, generator=_seeded())
    with torch.no_grad():
        critic.train()
        assert not torch.equal(critic(z), critic(z))  # dropout draws new masks
        critic.eval()
        logits = critic(z)
        assert logits.shape == (16,)
        assert torch.equal(logits, critic(z))


def test_latent_discriminator_refuses_dropout_one():
    with pytest.raises(ValueError, match="dropout must be in \\[0, 1\\), got 1.0"):
        LatentDiscriminator(dropout=1.0)


# ---------------------------------------------------------------- DCGANDiscriminator


def test_dcgan_discriminator_channel_plan_at_128_px():
    critic = DCGANDiscriminator()  # b = 64
    convs = [m for m in critic.modules() if isinstance(m, nn.Conv2d)]
    plan = [
        (m.in_channels, m.out_channels, m.kernel_size[0], m.stride[0], m.padding[0]) for m in convs
    ]
    assert plan == [
        (3, 64, 4, 2, 1),  # 128 -> 64
        (64, 128, 4, 2, 1),  # -> 32
        (128, 256, 4, 2, 1),  # -> 16
        (256, 512, 4, 2, 1),  # -> 8
        (512, 1024, 4, 2, 1),  # -> 4
        (1024, 1, 4, 1, 0),  # -> 1
    ]
    assert [m.bias is None for m in convs] == [False, True, True, True, True, False]
    norms = [m.num_features for m in critic.modules() if isinstance(m, nn.BatchNorm2d)]
    assert norms == [128, 256, 512, 1024]  # none after the first convolution
    slopes = [m.negative_slope for m in critic.modules() if isinstance(m, nn.LeakyReLU)]
    assert slopes == [0.2] * 5


@pytest.mark.parametrize(("size", "widths"), [(32, [8, 16, 32]), (64, [8, 16, 32, 64])])
def test_dcgan_discriminator_stops_at_4x4_for_small_images(size, widths):
    critic = DCGANDiscriminator(image_size=size, base_channels=8)
    convs = [m for m in critic.features if isinstance(m, nn.Conv2d)]
    assert [m.out_channels for m in convs] == widths
    images = torch.randn(2, 3, size, size, generator=_seeded())
    with torch.no_grad():
        assert critic.features(images).shape == (2, widths[-1], 4, 4)
        logits = critic(images)
    assert logits.shape == (2,) and torch.isfinite(logits).all()


def test_dcgan_discriminator_refuses_wrong_sizes():
    with pytest.raises(ValueError, match="power of two >= 16, got 96"):
        DCGANDiscriminator(image_size=96)
    critic = DCGANDiscriminator(image_size=32, base_channels=8)
    with pytest.raises(ValueError, match=r"image_size=32\) got images of size \(64, 64\)"):
        critic(torch.zeros(2, 3, 64, 64))


# ---------------------------------------------------------------- all four


NETWORKS = {
    "encoder": (lambda: ResNetEncoder(10, base_channels=8), (4, 3, 32, 32)),
    "generator": (lambda: ResNetGenerator(10, image_size=32, base_channels=8), (4, 10)),
    "latent_discriminator": (lambda: LatentDiscriminator(10, hidden=32), (4, 10)),
    "dcgan_discriminator": (lambda: DCGANDiscriminator(32, base_channels=8), (4, 3, 32, 32)),
}


@pytest.mark.parametrize("name", list(NETWORKS))
def test_every_parameter_gets_a_gradient(name):
    build, shape = NETWORKS[name]
    torch.manual_seed(0)
    network = build().train()
    output = network(torch.randn(shape, generator=_seeded(1)))
    assert torch.isfinite(output).all()
    # a random weighting: a plain sum can cancel exactly through BatchNorm
    (output * torch.randn(output.shape, generator=_seeded(2))).sum().backward()
    for param_name, param in network.named_parameters():
        assert param.grad is not None, f"{name}.{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), param_name
        assert param.grad.abs().sum() > 0, f"{name}.{param_name} got a zero gradient"


@pytest.mark.parametrize(
    ("build", "message"),
    [
        (lambda: ResNetEncoder(base_channels=0), "out_features=99, base_channels=0, in_channels=3"),
        (lambda: ResNetGenerator(latent_dim=0), "latent_dim=0, base_channels=64"),
        (lambda: LatentDiscriminator(layers=0), "latent_dim=99, hidden=1000, layers=0"),
        (lambda: DCGANDiscriminator(in_channels=0), "base_channels=64, in_channels=0"),
    ],
)
def test_sizes_below_one_are_refused_by_name(build, message):
    with pytest.raises(ValueError, match=f"must be >= 1: {message}"):
        build()
