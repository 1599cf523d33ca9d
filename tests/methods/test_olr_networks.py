"""OLR's networks and losses (spec "Architecture", "Losses and training", pure unit tests):
the Siamese encoder, the pair loss and its targets, the Table 1 decoder and Rescale, the decoder
loss with its float32 SSIM, the linear probe and the collapse measure."""

from __future__ import annotations

import doctest

import pytest
import torch

import lightning_modules.olr.decoder as decoder_module
import lightning_modules.olr.encoder as encoder_module
import lightning_modules.olr.probe as probe_module
from callbacks.image_quality.ssim import ssim
from lightning_modules.components.vgg import VGGTrunk
from lightning_modules.olr import (
    LinearProbe,
    ReconstructionDecoder,
    SiameseEncoder,
    constant_target_loss,
    embedding_moments,
    explained_variance_ratios,
    pair_loss,
    pair_targets,
    pc1_ratio,
    ratios_from_moments,
    reconstruction_loss,
    reconstruction_target,
    rescale,
    row_dots,
)

TINY = {"embedding_dim": 8, "widths": (16, 32, 64)}  # the spec's test size: 46 px, k = 8


@pytest.mark.parametrize("module", [encoder_module, decoder_module, probe_module])
def test_docstring_examples(module):
    assert doctest.testmod(module, extraglobs={"torch": torch}).failed == 0


# --- Siamese encoder S ----------------------------------------------------------------------------


def test_default_trunk_takes_178_px_to_11_x_11_and_the_label_layer_to_1216_maps():
    encoder = SiameseEncoder().eval()
    images = torch.rand(1, 3, 178, 178)
    with torch.no_grad():
        features = encoder.trunk(images)
        maps = encoder.label_maps(images)
        embeddings = encoder(images)
    assert features.shape == (1, 256, 11, 11)
    assert maps.shape == (1, 38 * 32, 11, 11)
    assert embeddings.shape == (1, 38, 32)
    convs = [m for m in encoder.trunk if isinstance(m, torch.nn.Conv2d)]
    assert [c.out_channels for c in convs] == [32, 32, 64, 64, 128, 128, 256, 256]
    assert all(c.kernel_size == (3, 3) and c.padding == (1, 1) for c in convs)
    assert sum(isinstance(m, torch.nn.MaxPool2d) for m in encoder.trunk) == 4
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in encoder.trunk) == 8


def test_row_l_of_the_embedding_is_the_pooled_channel_group_l():
    encoder = SiameseEncoder(**TINY).eval()
    images = torch.rand(3, 3, 46, 46)
    with torch.no_grad():
        pooled = encoder.label_maps(images).mean(dim=(-2, -1))  # (B, L * k)
        embeddings = encoder(images)
    k = TINY["embedding_dim"]
    for label in (0, 5, 37):
        torch.testing.assert_close(embeddings[:, label], pooled[:, label * k : (label + 1) * k])


def test_embed_act_relu_is_non_negative_and_linear_is_not_and_all_parameters_learn():
    torch.manual_seed(0)
    images = torch.rand(4, 3, 46, 46)
    relu = SiameseEncoder(**TINY, embed_act="relu")
    linear = SiameseEncoder(**TINY, embed_act="linear")
    assert (relu(images) >= 0).all()
    assert (linear(images) < 0).any()
    linear(images).square().mean().backward()
    for name, parameter in linear.named_parameters():
        assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_encoder_weights_refuse_an_encoder_with_another_label_activation():
    linear = SiameseEncoder(embedding_dim=2, widths=(4,), embed_act="linear")
    SiameseEncoder(embedding_dim=2, widths=(4,), embed_act="linear").load_state_dict(
        linear.state_dict()
    )
    with pytest.raises(ValueError, match="embed_act='linear'.*embed_act='relu'"):
        SiameseEncoder(embedding_dim=2, widths=(4,)).load_state_dict(linear.state_dict())
    relu = SiameseEncoder(embedding_dim=2, widths=(4,))
    with pytest.raises(ValueError, match="embed_act='relu'.*embed_act='linear'"):
        SiameseEncoder(embedding_dim=2, widths=(4,), embed_act="linear").load_state_dict(
            relu.state_dict()
        )


def test_encoder_refuses_bad_arguments():
    with pytest.raises(ValueError, match="embed_act"):
        SiameseEncoder(embed_act="tanh")
    with pytest.raises(ValueError, match="widths"):
        VGGTrunk(widths=())


# --- pair loss L_S --------------------------------------------------------------------------------


def test_u_is_the_row_wise_dot_product():
    torch.manual_seed(0)
    e_a, e_b = torch.randn(5, 38, 8), torch.randn(5, 38, 8)
    u = row_dots(e_a, e_b)
    torch.testing.assert_close(u, torch.einsum("blk,blk->bl", e_a, e_b))
    for i, label in ((0, 0), (4, 37), (2, 11)):
        expected = sum(e_a[i, label, j] * e_b[i, label, j] for j in range(8))
        torch.testing.assert_close(u[i, label], expected)
    with pytest.raises(ValueError, match="shape"):
        row_dots(e_a, e_b[:, :, :4])


def test_pair_loss_is_the_mean_squared_gap_between_dots_and_targets():
    torch.manual_seed(1)
    e_a, e_b, target = torch.randn(3, 4, 2), torch.randn(3, 4, 2), torch.rand(3, 4)
    gaps = [
        (float(e_a[i, l] @ e_b[i, l]) - float(target[i, l])) ** 2
        for i in range(3)
        for l in range(4)
    ]
    assert pair_loss(e_a, e_b, target).item() == pytest.approx(sum(gaps) / len(gaps), rel=1e-5)


def test_the_trivial_embedding_p_times_a_unit_vector_gives_zero_pair_loss():
    torch.manual_seed(2)
    logits_a, logits_b = torch.randn(6, 38) * 3, torch.randn(6, 38) * 3
    w = torch.nn.functional.normalize(torch.randn(38, 8), dim=1)  # one unit vector per label
    e_a = logits_a.sigmoid()[..., None] * w
    e_b = logits_b.sigmoid()[..., None] * w
    target = pair_targets(logits_a, logits_b)
    assert pair_loss(e_a, e_b, target).item() == pytest.approx(0.0, abs=1e-12)
    assert pair_loss(e_a, e_b.roll(1, dims=0), target).item() > 1e-3  # other partner: not zero


def test_per_pair_losses_average_to_the_batch_loss():
    torch.manual_seed(4)
    e_a, e_b, target = torch.randn(5, 3, 2), torch.randn(5, 3, 2), torch.rand(5, 3)
    per_pair = pair_loss(e_a, e_b, target, reduction="none")
    assert per_pair.shape == (5,)
    torch.testing.assert_close(per_pair[1], (row_dots(e_a, e_b)[1] - target[1]).square().mean())
    torch.testing.assert_close(per_pair.mean(), pair_loss(e_a, e_b, target))
    baseline = constant_target_loss(target, 0.5, reduction="none")
    torch.testing.assert_close(baseline, (target - 0.5).square().mean(dim=1))
    with pytest.raises(ValueError, match="reduction"):
        pair_loss(e_a, e_b, target, reduction="sum")


def test_pair_targets_occlusion_and_temperature():
    torch.manual_seed(3)
    z_a, z_b = torch.randn(4, 38) * 4, torch.randn(4, 38) * 4
    torch.testing.assert_close(pair_targets(z_a, z_b), z_a.sigmoid() * z_b.sigmoid())
    torch.testing.assert_close(
        pair_targets(z_a, z_b, "temperature", temperature=2.0),
        (z_a / 2).sigmoid() * (z_b / 2).sigmoid(),
    )
    torch.testing.assert_close(pair_targets(z_a, z_b, "temperature", 1.0), pair_targets(z_a, z_b))
    hot = pair_targets(z_a, z_b, "temperature", temperature=1e6)
    torch.testing.assert_close(hot, torch.full_like(hot, 0.25))
    with pytest.raises(ValueError, match="targets"):
        pair_targets(z_a, z_b, "softmax")
    with pytest.raises(ValueError, match="temperature"):
        pair_targets(z_a, z_b, "temperature", temperature=0.0)


def test_constant_target_loss_is_the_loss_of_predicting_the_mean_target():
    target = torch.tensor([[0.0, 1.0], [1.0, 1.0], [0.5, 1.0]])
    # per-label means 0.5 and 1: squared gaps 0.25, 0.25, 0 and 0, 0, 0 -> 0.5 / 6
    assert constant_target_loss(target).item() == pytest.approx(0.5 / 6)
    assert constant_target_loss(target, 0.0).item() == pytest.approx((1 + 0.25 + 3) / 6)
    mean = torch.tensor([0.5, 0.5])  # gaps 0.25, 0.25, 0 and 0.25 x 3
    assert constant_target_loss(target, mean).item() == pytest.approx(1.25 / 6)
    e = torch.zeros(3, 2, 1)  # u = 0: a constant prediction of 0
    assert constant_target_loss(target, 0.0).item() == pytest.approx(pair_loss(e, e, target).item())


# --- reconstruction decoder R (Table 1) -----------------------------------------------------------

# Table 1: name -> output (channels, side) after the layer and its activation
TABLE_1 = {
    "dense": (18432, None),
    "reshape": (512, 6),
    "convt_12": (128, 12),
    "conv_12": (64, 12),
    "convt_24": (64, 24),
    "conv_22_valid": (64, 22),
    "convt_44": (64, 44),
    "conv_44": (64, 44),
    "convt_88": (64, 88),
    "conv_88": (64, 88),
    "convt_176": (64, 176),
    "conv_final": (32, 176),
    "conv_out": (3, 176),
}


def _layer_outputs(decoder: ReconstructionDecoder, embeddings: torch.Tensor) -> dict:
    shapes = {}
    hooks = [
        child.register_forward_hook(
            lambda _m, _i, out, name=name: shapes.__setitem__(name, tuple(out.shape[1:]))
        )
        for name, child in decoder.layers.named_children()
    ]
    with torch.no_grad():
        decoder(embeddings)
    for hook in hooks:
        hook.remove()
    return shapes


def _expected(rows: dict) -> dict:
    return {n: (c,) if s is None else (c, s, s) for n, (c, s) in rows.items()}


def test_decoder_matches_table_1_layer_for_layer_at_178_px():
    decoder = ReconstructionDecoder()
    assert _layer_outputs(decoder, torch.rand(1, 38, 32)) == _expected(TABLE_1)
    assert decoder.layers.dense[0].in_features == 1216
    for name, child in decoder.layers.named_children():
        layer = child[0] if isinstance(child, torch.nn.Sequential) else child
        if isinstance(layer, torch.nn.Conv2d | torch.nn.ConvTranspose2d):
            assert layer.kernel_size == (3, 3), name
        if name != "reshape":
            assert isinstance(child[1], torch.nn.ReLU), f"{name}: every activation is ReLU"


@pytest.mark.parametrize(
    ("image_size", "last_row"), [(90, "conv_88"), (46, "conv_44"), (24, "conv_22_valid")]
)
def test_small_decoders_keep_table_1_up_to_image_minus_2_then_conv_final_and_conv_out(
    image_size, last_row
):
    output = image_size - 2
    names = list(TABLE_1)
    rows = {n: TABLE_1[n] for n in names[: names.index(last_row) + 1]}
    rows |= {"conv_final": (32, output), "conv_out": (3, output)}
    decoder = ReconstructionDecoder(embedding_dim=8, image_size=image_size)
    assert _layer_outputs(decoder, torch.rand(2, 38 * 8)) == _expected(rows)
    assert decoder.output_size == output


def test_decoder_out_act_and_its_errors():
    torch.manual_seed(0)
    e = torch.randn(2, 38, 8)
    relu = ReconstructionDecoder(embedding_dim=8, image_size=46, channels=8)
    linear = ReconstructionDecoder(embedding_dim=8, image_size=46, channels=8, out_act="none")
    assert (relu(e) >= 0).all()
    assert isinstance(linear.layers.conv_out[1], torch.nn.Identity)
    assert (linear(e) < 0).any()
    reconstruction = relu.reconstruct(e)
    assert reconstruction.shape == (2, 3, 44, 44)
    assert reconstruction.min() >= 0 and reconstruction.max() <= 1
    with pytest.raises(ValueError, match="image_size must be 178"):
        ReconstructionDecoder(image_size=64)
    with pytest.raises(ValueError, match="out_act"):
        ReconstructionDecoder(out_act="sigmoid")


def test_rescale_maps_each_image_to_min_0_max_1():
    torch.manual_seed(0)
    x = torch.randn(4, 3, 9, 9) * torch.tensor([1.0, 5.0, 0.1, 30.0]).view(4, 1, 1, 1) + 7
    y = rescale(x)
    flat = y.flatten(1)
    torch.testing.assert_close(flat.min(dim=1).values, torch.zeros(4))
    torch.testing.assert_close(flat.max(dim=1).values, torch.ones(4))
    # per image over C, H, W: affine within an image, so the ranks are kept
    torch.testing.assert_close(rescale(x[1:2] * 3 - 2), y[1:2])
    constant = rescale(torch.full((1, 3, 4, 4), 0.7))
    assert torch.isfinite(constant).all() and (constant == 0).all()


def test_reconstruction_target_drops_the_1_px_border():
    images = torch.rand(2, 3, 178, 178)
    target = reconstruction_target(images)
    assert target.shape == (2, 3, 176, 176)
    torch.testing.assert_close(target, images[:, :, 1:177, 1:177])


# --- decoder loss L_R and its SSIM ----------------------------------------------------------------


def test_reconstruction_loss_is_alpha_ssim_part_plus_one_minus_alpha_mse_part():
    torch.manual_seed(1)
    target = torch.rand(2, 3, 22, 22)
    conv_out = (torch.rand(2, 3, 22, 22) * 3).requires_grad_()
    loss = reconstruction_loss(conv_out, target, ssim_weight=0.3)
    ssim_part = (1 - ssim(conv_out.detach(), target, data_range=1.0)).mean().item()
    mse_part = (rescale(conv_out.detach()) - target).square().mean().item()
    assert loss.ssim.item() == pytest.approx(ssim_part, abs=1e-5)
    assert loss.mse.item() == pytest.approx(mse_part, rel=1e-6)
    assert loss.total.item() == pytest.approx(0.3 * ssim_part + 0.7 * mse_part, abs=1e-5)
    loss.total.backward()
    assert torch.isfinite(conv_out.grad).all() and conv_out.grad.abs().sum() > 0
    # the default alpha is 0.5; a perfect Conv2D_out (already spanning [0, 1]) costs nothing
    perfect = rescale(target)
    assert reconstruction_loss(perfect, perfect).total.item() == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(ValueError, match="reconstruction_target"):
        reconstruction_loss(conv_out, torch.rand(2, 3, 24, 24))


# --- linear probe P -------------------------------------------------------------------------------


def test_linear_probe_is_one_dense_layer_on_the_flattened_embedding():
    probe = LinearProbe()
    assert [type(m) for m in probe.children()] == [torch.nn.Linear]
    assert (probe.linear.in_features, probe.linear.out_features) == (1216, 38)
    e = torch.randn(4, 38, 32)
    torch.testing.assert_close(probe(e), probe(e.flatten(1)))
    torch.testing.assert_close(probe(e), e.flatten(1) @ probe.linear.weight.T + probe.linear.bias)
    with pytest.raises(ValueError, match="38 x 32"):
        probe(torch.rand(4, 38, 8))


# --- collapse measure -----------------------------------------------------------------------------


def test_pc1_ratio_is_1_on_a_collapsed_set_and_1_over_k_on_an_isotropic_one():
    torch.manual_seed(0)
    n, labels, k = 20000, 3, 8
    w = torch.nn.functional.normalize(torch.randn(labels, k), dim=1)
    collapsed = torch.rand(n, labels, 1) * w + 1e-4 * torch.randn(n, labels, k)  # e^l = p^l w_l
    isotropic = torch.randn(n, labels, k) + 5.0  # the offset is removed by the centring
    assert (pc1_ratio(collapsed) > 0.999).all()
    torch.testing.assert_close(
        pc1_ratio(isotropic), torch.full((labels,), 1 / k).double(), atol=0.02, rtol=0
    )
    ratios = explained_variance_ratios(isotropic)
    assert ratios.shape == (labels, k)
    torch.testing.assert_close(ratios.sum(dim=1), torch.ones(labels).double())
    assert (ratios[:, :-1] >= ratios[:, 1:]).all()


def test_explained_variance_ratios_equal_the_squared_singular_values_of_the_centred_set():
    torch.manual_seed(1)
    e = torch.randn(50, 2, 4) @ torch.randn(4, 4)
    for label in range(2):
        x = e[:, label].double()
        singular = torch.linalg.svd(x - x.mean(dim=0), full_matrices=False).S
        expected = singular**2 / (singular**2).sum()
        torch.testing.assert_close(explained_variance_ratios(e)[label], expected)


def test_moments_of_two_halves_add_up_to_the_ratios_of_the_whole():
    torch.manual_seed(2)
    e = torch.randn(40, 3, 4) @ torch.randn(4, 4) + 0.5
    first, second = embedding_moments(e[:15]), embedding_moments(e[15:])
    summed = [a + b for a, b in zip(first, second, strict=True)]  # what all_reduce(sum) gives
    torch.testing.assert_close(ratios_from_moments(*summed), explained_variance_ratios(e))
    with pytest.raises(ValueError, match="N >= 2"):
        ratios_from_moments(*embedding_moments(e[:1]))


def test_a_label_that_never_varies_counts_as_collapsed():
    e = torch.zeros(10, 2, 4)
    e[:, 1] = torch.randn(10, 4)
    ratios = pc1_ratio(e)
    assert ratios[0].item() == 1.0 and ratios[1].item() < 1.0
    with pytest.raises(ValueError, match="N >= 2"):
        pc1_ratio(torch.zeros(1, 2, 4))
