import torch

from spiral.pipeline.models import build_model, split_spec, with_kwargs


def test_factory_spec_with_kwargs():
    model = build_model("spiral.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]")
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    assert model.stem[0].out_channels == 8


def test_torchvision_spec():
    model = build_model("torchvision:resnet18?num_classes=3")
    assert model.fc.out_features == 3


def test_with_kwargs_keeps_existing():
    spec = with_kwargs("torchvision:resnet18?num_classes=3", num_classes=10, width=2)
    assert split_spec(spec) == ("torchvision:resnet18", {"num_classes": 3, "width": 2})
