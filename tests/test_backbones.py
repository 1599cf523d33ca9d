"""The one backbone factory: timm classifiers and trunks, torchvision trunks, stride surgery,
local weights (``lightning_modules/components/backbones.py``)."""

from __future__ import annotations

import pytest
import timm
import torch
import torchvision

from lightning_modules.components.backbones import (
    create_backbone,
    pretrained_normalization,
    reduce_stride,
)
from lightning_modules.components.weights import load_local_weights

TINY_NET = {"channels": [8, 16, 32, 64], "stem_width": 8}


def test_backbone_local_weights_roundtrip(tmp_path):
    from safetensors.torch import save_file

    source = create_backbone("resnet10t", 1000, model_kwargs=TINY_NET)
    save_file(source.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save(source.state_dict(), tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        model = create_backbone("resnet10t", 7, str(tmp_path / name), model_kwargs=TINY_NET)
        assert model.get_classifier().out_features == 7
        assert torch.equal(model.conv1[0].weight, source.conv1[0].weight)
        assert model(torch.randn(2, 3, 32, 32)).shape == (2, 7)
    assert pretrained_normalization(model) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def test_backbone_weight_errors_are_clear(tmp_path):
    with pytest.raises(ValueError, match=r"seresnext101_32x4d.*weights_file"):
        create_backbone("seresnext101_32x4d", 40, pretrained=True)
    state = create_backbone("resnet10t", 10, model_kwargs=TINY_NET).state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["conv1.0.weight"]
    torch.save(state, tmp_path / "bad.pth")
    model = create_backbone("resnet10t", 10, model_kwargs=TINY_NET)
    with pytest.raises(ValueError, match=r"1 missing key\(s\): conv1.0.weight.*extra.weight"):
        load_local_weights(model, tmp_path / "bad.pth", drop_prefixes=("fc.",))
    with pytest.raises(FileNotFoundError, match="nowhere.pth"):
        load_local_weights(model, tmp_path / "nowhere.pth")


def test_timm_trunk_gives_unpooled_maps_with_the_classifier_weights(tmp_path):
    source = create_backbone("resnet10t", 1000, model_kwargs=TINY_NET)
    torch.save(source.state_dict(), tmp_path / "w.pth")
    trunk = create_backbone(
        "timm/resnet10t", weights_file=str(tmp_path / "w.pth"), model_kwargs=TINY_NET
    )
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        maps = trunk.eval()(images)
        expected = source.eval().forward_features(images)
    assert maps.shape == (2, trunk.num_features, 2, 2)  # output stride 32
    assert torch.equal(maps, expected)


def _timm_mobilenet_v1(weights=None):
    return timm.create_model("mobilenetv1_100", pretrained=False)


@pytest.mark.parametrize(
    ("name", "reference", "channels", "head"),
    [
        ("torchvision/vgg16", torchvision.models.vgg16, 512, "classifier."),
        ("torchvision/resnet50", torchvision.models.resnet50, 2048, "fc."),
        ("torchvision/mobilenet_v2", torchvision.models.mobilenet_v2, 1280, "classifier."),
        ("timm/mobilenetv1_100", _timm_mobilenet_v1, 1024, "classifier."),
    ],
)
def test_trunks_load_library_weights_and_keep_names_through_stride_surgery(
    name, reference, channels, head, tmp_path
):
    original = reference(weights=None).eval()
    path = tmp_path / "w.pth"
    torch.save(original.state_dict(), path)
    trunk = create_backbone(name, weights_file=str(path)).eval()
    theirs = {k: v for k, v in original.state_dict().items() if not k.startswith(head)}
    assert {k: v.shape for k, v in trunk.state_dict().items()} == {
        k: v.shape for k, v in theirs.items()
    }
    assert all(torch.equal(trunk.state_dict()[k], v) for k, v in theirs.items())
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert trunk(images).shape == (1, channels, 2, 2)  # stride 32
        stride = 16 if "vgg" in name else 8
        reduce_stride(trunk, name, stride)
        assert trunk(images).shape == (1, channels, 64 // stride, 64 // stride)
    assert set(trunk.state_dict()) == set(theirs)  # surgery renames nothing
    assert trunk.num_features == channels


def test_resnet_surgery_keeps_the_weights_and_only_changes_strides():
    trunk = create_backbone("torchvision/resnet50").eval()
    before = {k: v.clone() for k, v in trunk.state_dict().items()}
    reduce_stride(trunk, "torchvision/resnet50", 8)
    assert trunk.layer3[0].conv2.stride == (1, 1) and trunk.layer4[0].downsample[0].stride == (1, 1)
    assert trunk.layer2[0].conv2.stride == (2, 2)  # earlier stages untouched
    assert all(torch.equal(before[k], v) for k, v in trunk.state_dict().items())


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "torchvision/vgg16", "output_stride": 4}, "no stride surgery to output stride 4"),
        ({"name": "torchvision/alexnet"}, "unknown torchvision backbone 'alexnet'"),
        ({"name": "torchvision/vgg16", "num_classes": 3}, "torchvision backbones are trunks"),
        ({"name": "keras/vgg16"}, "unknown backbone source 'keras'"),
        ({"name": "torchvision/resnet50", "pretrained": True}, r"resnet50.*weights_file"),
        ({"name": "latentlab/vgg16"}, "unknown latentlab backbone 'vgg16'"),
        ({"name": "latentlab/vgg", "pretrained": True}, "latentlab/vgg has no pretrained"),
        ({"name": "latentlab/vgg", "weights_file": "x.pth"}, "latentlab/vgg has no pretrained"),
    ],
)
def test_factory_errors_name_the_problem(kwargs, match):
    with pytest.raises(ValueError, match=match):
        create_backbone(**kwargs)


def test_latentlab_vgg_is_a_trunk_or_a_classifier_with_the_given_widths():
    trunk = create_backbone("latentlab/vgg", model_kwargs={"widths": [4, 8], "convs_per_stage": 1})
    maps = trunk(torch.rand(2, 3, 20, 20))
    assert maps.shape == (2, 8, 5, 5) and trunk.num_features == 8
    classifier = create_backbone("latentlab/vgg", num_classes=5, model_kwargs={"widths": [4, 8]})
    images = torch.rand(2, 3, 20, 20)
    logits = classifier(images)
    assert logits.shape == (2, 5)
    # the head reads the global average of the trunk's maps
    pooled = classifier.trunk(images).mean(dim=(-2, -1))
    torch.testing.assert_close(logits, classifier.head(pooled))
