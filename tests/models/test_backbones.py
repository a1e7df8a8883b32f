"""Backbone bodies and local pretrained weights."""

import pytest
import torch
from torchvision.models import resnet18

from ablate.errors import ConfigError
from ablate.models import BACKBONES, build_body, load_weights


@pytest.mark.parametrize("name", BACKBONES)
def test_body_levels_and_channels(name):
    body, channels = build_body(name, width=0.5)
    levels = body.eval()(torch.rand(1, 3, 64, 96))
    assert list(levels) == ["c3", "c4", "c5"]
    assert [f.shape[1] for f in levels.values()] == channels  # what the neck is built for
    assert [tuple(f.shape[-2:]) for f in levels.values()] == [(8, 12), (4, 6), (2, 3)]  # strides 8, 16, 32


def test_tiny_width_scales_channels():
    assert build_body("tiny", width=1.0)[1] == [32, 64, 128]
    assert build_body("tiny", width=2.0)[1] == [64, 128, 256]


def test_unknown_backbone():
    with pytest.raises(ValueError, match="valid: tiny, resnet18"):
        build_body("resnet19")


def body_state(detector):
    return detector.model.backbone.body.state_dict()


@pytest.mark.parametrize("backbone", ["tiny", "resnet18"])
def test_pretrained_weights_load_into_a_fresh_detector(backbone, tmp_path, make_config, make_detector):
    source = make_detector(make_config(model={"backbone": backbone}), seed=1)
    with torch.no_grad():  # make the saved weights distinguishable from any init, BN statistics included
        for value in source.model.backbone.body.state_dict().values():
            if value.is_floating_point():
                value.add_(torch.rand_like(value))
    path = tmp_path / "backbone.pt"
    torch.save(body_state(source), path)

    fresh = make_detector(make_config(model={"backbone": backbone}), seed=2)
    loaded = make_detector(make_config(model={"backbone": backbone, "pretrained": str(path)}), seed=2)
    expected = body_state(source)
    for key, value in body_state(loaded).items():
        assert torch.equal(value, expected[key]), key
    assert not all(torch.equal(v, expected[k]) for k, v in body_state(fresh).items())


def test_torchvision_classification_checkpoint_loads(tmp_path):
    """A torchvision ImageNet checkpoint (with its fc layer) loads as it is: fc is skipped."""
    torch.manual_seed(0)
    classifier = resnet18(weights=None)
    path = tmp_path / "resnet18.pth"
    torch.save(classifier.state_dict(), path)
    body, _ = build_body("resnet18")
    load_weights(body, str(path))
    assert torch.equal(body.state_dict()["layer4.1.conv2.weight"], classifier.state_dict()["layer4.1.conv2.weight"])


def test_missing_file_is_a_config_error(tmp_path, make_config, make_detector):
    path = tmp_path / "nowhere" / "weights.pt"
    with pytest.raises(ConfigError, match="model.pretrained") as err:
        make_detector(make_config(model={"pretrained": str(path)}))
    assert str(path) in str(err.value)


def test_weights_of_another_backbone_are_rejected_with_the_keys(tmp_path):
    body, _ = build_body("resnet18")
    path = tmp_path / "resnet.pt"
    torch.save(body.state_dict(), path)
    tiny, _ = build_body("tiny")
    with pytest.raises(ConfigError, match="model.pretrained") as err:
        load_weights(tiny, str(path))
    message = str(err.value)
    assert "missing" in message and "stem.0.0.weight" in message
    assert "unexpected" in message and "conv1.weight" in message


def test_weights_of_another_width_are_rejected_with_the_shapes(tmp_path):
    wide, _ = build_body("tiny", width=2.0)
    path = tmp_path / "wide.pt"
    torch.save(wide.state_dict(), path)
    narrow, _ = build_body("tiny", width=1.0)
    with pytest.raises(ConfigError, match="shape mismatch") as err:
        load_weights(narrow, str(path))
    assert "stem.0.0.weight (16, 3, 3, 3) vs (8, 3, 3, 3)" in str(err.value)


def test_not_a_state_dict(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="could not be read"):
        load_weights(build_body("tiny")[0], str(path))
    torch.save([torch.zeros(1)], path)
    with pytest.raises(ConfigError, match="not a state dict"):
        load_weights(build_body("tiny")[0], str(path))


def test_imagenet_weights_load_from_torch_home_and_their_absence_says_what_to_fetch(tmp_path, monkeypatch,
                                                                                    make_config, make_detector):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # torch.hub.get_dir() reads it on each call
    config = make_config(model={"backbone": "resnet18", "pretrained": "imagenet"})
    with pytest.raises(ConfigError) as err:
        make_detector(config)
    message = str(err.value)
    folder = tmp_path / "torch" / "hub" / "checkpoints"
    assert "resnet18-f37072fd.pth is not in" in message and str(folder) in message  # the file, where it goes
    assert "torchvision.models.ResNet18_Weights.IMAGENET1K_V1.get_state_dict(progress=True)" in message  # how

    torch.manual_seed(0)
    classifier = resnet18(weights=None)  # torchvision's file: the classifier's state dict, fc included
    folder.mkdir(parents=True)
    torch.save(classifier.state_dict(), folder / "resnet18-f37072fd.pth")
    loaded = body_state(make_detector(config))
    assert torch.equal(loaded["layer4.1.conv2.weight"], classifier.state_dict()["layer4.1.conv2.weight"])

    with pytest.raises(ConfigError, match="no ImageNet weights for backbone 'tiny'"):
        make_detector(make_config(model={"backbone": "tiny", "pretrained": "imagenet"}))


def test_caffe_style_strides_in_the_first_1x1_conv_of_a_bottleneck():
    pytorch_body, _ = build_body("resnet50")
    caffe_body, _ = build_body("resnet50", style="caffe")
    for name in ("layer2.0", "layer3.0", "layer4.0"):
        p, c = pytorch_body.get_submodule(name), caffe_body.get_submodule(name)
        assert (p.conv1.stride, p.conv2.stride) == ((1, 1), (2, 2))  # torchvision: the 3x3 strides (pytorch style)
        assert (c.conv1.stride, c.conv2.stride) == ((2, 2), (1, 1))  # MSRA's caffe models: the 1x1 does
    assert {k: v.shape for k, v in pytorch_body.state_dict().items()} == \
        {k: v.shape for k, v in caffe_body.state_dict().items()}  # the same weights load into either
    x = torch.rand(1, 3, 64, 64)
    assert [f.shape for f in pytorch_body.eval()(x).values()] == [f.shape for f in caffe_body.eval()(x).values()]


def test_caffe_weights_see_bgr_pixels_minus_caffe_means(tmp_path, make_config, make_detector):
    """A caffe checkpoint expects BGR 0..255 minus the means: flipping its first conv as it loads, and the
    caffe statistics in RGB order, compute the same as feeding it BGR as caffe does."""
    torch.manual_seed(0)
    state = resnet18(weights=None).state_dict()
    path = tmp_path / "caffe.pth"
    torch.save(state, path)
    caffe = make_detector(make_config(model={"backbone": "resnet18", "style": "caffe", "pretrained": str(path)}))
    transform = caffe.model.transform
    assert transform.image_mean == pytest.approx([123.675 / 255, 116.28 / 255, 103.53 / 255])
    assert transform.image_std == pytest.approx([1 / 255] * 3)
    rgb = torch.rand(1, 3, 32, 32)
    ours = caffe.model.backbone.body.eval()(transform.normalize(rgb[0])[None])["c5"]
    reference, _ = build_body("resnet18", style="caffe")
    reference.load_state_dict({k: v for k, v in state.items() if not k.startswith("fc.")})
    bgr = rgb.flip(1) * 255 - torch.tensor([103.53, 116.28, 123.675])[:, None, None]  # what caffe feeds
    torch.testing.assert_close(ours, reference.eval()(bgr)["c5"], rtol=1e-4, atol=1e-3)
