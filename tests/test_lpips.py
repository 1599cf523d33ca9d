"""LPIPS (components/lpips.py) against the lpips package on the same weights, offline."""

from __future__ import annotations

import lpips as lpips_package
import pytest
import torch

from lightning_modules.components.lpips import LPIPS, SPLITS, TRUNK_FILES

NETS = sorted(SPLITS)


def trunk_file(tmp_path, net: str) -> str:
    """A randomly initialised trunk saved as torchvision's file is laid out (``features.N...``),
    under a name of its own (a file named as the manifest's would be checksum-verified)."""
    torch.manual_seed(0)
    trunk = LPIPS(net, random_trunk=True)
    state = {}
    for block in trunk.blocks:
        state.update({f"features.{k}": v for k, v in block.state_dict().items()})
    state["classifier.1.weight"] = torch.zeros(2, 2)  # ignored, as an ImageNet head is
    path = tmp_path / f"random-trunk-{net}.pth"
    torch.save(state, path)
    return str(path)


def reference(net: str, path: str) -> torch.nn.Module:
    """``lpips.LPIPS`` with its heads from the package and its trunk replaced by ``path``'s."""
    theirs = lpips_package.LPIPS(net=net, pretrained=True, pnet_rand=True, verbose=False)
    state = torch.load(path, weights_only=True)
    for i in range(1, 6):
        block = getattr(theirs.net, f"slice{i}")
        block.load_state_dict({f"{k}": state[f"features.{k}"] for k in block.state_dict()})
    return theirs.eval()


@pytest.mark.parametrize("net", NETS)
def test_equal_to_the_lpips_package_on_the_same_weights(tmp_path, net):
    path = trunk_file(tmp_path, net)
    ours, theirs = LPIPS(net, trunk_weights=path), reference(net, path)
    generator = torch.Generator().manual_seed(1)
    x = torch.rand(4, 3, 64, 64, generator=generator) * 2 - 1
    y = torch.rand(4, 3, 64, 64, generator=generator) * 2 - 1
    with torch.no_grad():
        expected = theirs(x, y).flatten()
        got = ours(x, y)
        assert got.shape == (4,)
        torch.testing.assert_close(got, expected, rtol=0, atol=1e-6)
        assert expected.abs().min() > 1e-3  # not a trivial zero
        # [0, 1] images with normalize=True, as lpips' normalize flag
        unit = LPIPS(net, trunk_weights=path, normalize=True)
        a, b = (x + 1) / 2, (y + 1) / 2
        torch.testing.assert_close(
            unit(a, b), theirs(a, b, normalize=True).flatten(), rtol=0, atol=1e-6
        )
        assert ours(x, x).abs().max() == 0


def test_trunk_weights_are_never_silently_random(tmp_path):
    with pytest.raises(
        ValueError,
        match=r"trunk_weights: 'vgg16'.*vgg16-397923af.pth.*make weights DOWNLOAD=1 NAMES=vgg16",
    ):
        LPIPS("vgg")
    missing = tmp_path / "absent.pth"
    with pytest.raises(FileNotFoundError, match=f"weights file not found: {missing}"):
        LPIPS("alex", trunk_weights=str(missing))
    named = tmp_path / TRUNK_FILES["alex"][0]  # the manifest's file name: expected, with its URL
    with pytest.raises(FileNotFoundError, match=f"not found at {named}.*curl -L -o {named} "):
        LPIPS("alex", trunk_weights=str(named))
    with pytest.raises(ValueError, match="not both"):
        LPIPS("alex", trunk_weights=str(missing), random_trunk=True)
    with pytest.raises(ValueError, match="net must be one of"):
        LPIPS("squeeze", random_trunk=True)


def test_a_trunk_file_that_does_not_match_is_refused_by_key(tmp_path):
    path = trunk_file(tmp_path, "alex")
    with pytest.raises(ValueError, match="missing.*features.0.weight"):
        LPIPS("vgg", trunk_weights=path)


def test_negative_heads_are_refused(tmp_path):
    from lightning_modules.components.lpips import lpips_head_file

    state = torch.load(lpips_head_file("alex"), map_location="cpu", weights_only=True)
    state["lin2.model.1.weight"] = -state["lin2.model.1.weight"]
    torch.save(state, tmp_path / "heads.pth")
    with pytest.raises(ValueError, match="lin2 has negative weights"):
        LPIPS("alex", random_trunk=True, head_weights=str(tmp_path / "heads.pth"))


def test_nothing_is_downloaded(monkeypatch, tmp_path):
    def refuse(*args, **kwargs):
        raise AssertionError("a download was attempted")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    for net in NETS:
        LPIPS(net, trunk_weights=trunk_file(tmp_path, net))


def test_a_loss_for_training_gradients_reach_the_images_only():
    torch.manual_seed(0)
    loss_fn = LPIPS("alex", random_trunk=True, normalize=True).train()
    x = torch.rand(2, 3, 64, 64, requires_grad=True)
    y = torch.rand(2, 3, 64, 64)
    loss = loss_fn(x, y).mean()
    loss.backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss_fn.parameters())
    with torch.no_grad():  # train mode computes what eval mode does (no dropout, no batch norm)
        torch.testing.assert_close(loss_fn.eval()(x, y).mean(), loss, rtol=0, atol=0)
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        loss_fn(x[:, :1], y[:, :1])


@pytest.mark.parametrize("net", NETS)
def test_pairwise_is_forward_on_every_pair(net):
    torch.manual_seed(1)
    model = LPIPS(net, random_trunk=True)
    x, y = torch.rand(3, 3, 40, 32) * 2 - 1, torch.rand(5, 3, 40, 32) * 2 - 1
    y[2] = x[1]  # a pair of equal images: distance exactly 0 up to rounding
    matrix = model.pairwise(x, y, batch_size=2)
    assert matrix.shape == (3, 5) and matrix.dtype == torch.float64
    expected = torch.stack([model(x[i].expand_as(y), y) for i in range(3)]).double()
    torch.testing.assert_close(matrix, expected, rtol=1e-5, atol=1e-6)
    assert matrix[1, 2].abs() < 1e-9
    with pytest.raises(ValueError, match="one size"):
        model.pairwise(x, y[:, :, :20])
