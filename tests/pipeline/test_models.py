import pytest
import torch

from spiralprune.core.errors import InputError
from spiralprune.pipeline.models import build_model, given_modules, split_spec, with_kwargs


def test_factory_spec_with_kwargs():
    model = build_model("spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=8&blocks=[1,1,1,1]")
    assert model(torch.zeros(2, 1, 16, 16)).shape == (2, 10)
    assert model.stem[0].out_channels == 8


def test_torchvision_spec():
    model = build_model("torchvision:resnet18?num_classes=3")
    assert model.fc.out_features == 3


def test_with_kwargs_keeps_existing():
    spec = with_kwargs("torchvision:resnet18?num_classes=3", num_classes=10, width=2)
    assert split_spec(spec) == ("torchvision:resnet18", {"num_classes": 3, "width": 2})


def test_detectors_and_segmenters_build_without_reaching_for_the_network(tmp_path, monkeypatch):
    """Their builders fetch an ImageNet backbone by default: spiral passes weights_backbone=None unless typed."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # an empty cache: any download attempt would fail here
    model = build_model("torchvision:lraspp_mobilenet_v3_large?num_classes=11")
    assert model.classifier.low_classifier.out_channels == 11
    assert not any(tmp_path.rglob("*.pth"))


@pytest.mark.parametrize("spelled", ["null", "None"])
def test_an_explicit_none_for_a_weights_keyword_is_allowed(spelled):
    model = build_model(f"torchvision:fcos_resnet50_fpn?num_classes=3&weights={spelled}&weights_backbone={spelled}")
    assert model.head.classification_head.num_classes == 3


def test_typed_pretrained_weights_come_from_the_torch_cache(tmp_path, monkeypatch):
    """What an offline machine does: the file fetched elsewhere, placed in $TORCH_HOME, loads without the network."""
    torch.manual_seed(3)
    trained = build_model("torchvision:resnet18")
    cache = tmp_path / "hub" / "checkpoints"
    cache.mkdir(parents=True)
    torch.save(trained.state_dict(), cache / "resnet18-f37072fd.pth")  # the file name of weights=DEFAULT
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model("torchvision:resnet18?weights=DEFAULT")
    assert torch.equal(model.conv1.weight, trained.conv1.weight)


def test_typed_pretrained_weights_offline_say_how_to_prefetch(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))  # nothing cached, and no route to the download host
    with pytest.raises(InputError, match=r"cannot download its pretrained weights .*to pre-fetch them, run python -c"):
        build_model("torchvision:resnet18?weights=DEFAULT")


def test_a_spec_read_from_a_file_never_downloads(tmp_path, monkeypatch):
    """A checkpoint holds its weights: its spec's weights keywords are dropped, not fetched."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    model = build_model("torchvision:resnet18?weights=DEFAULT&num_classes=4", named_in=tmp_path / "spiral.json")
    assert model.fc.out_features == 4
    assert not any(tmp_path.rglob("*.pth"))


def test_timm_spec():
    model = build_model("timm:resnet18?num_classes=3")
    assert model.eval()(torch.zeros(1, 3, 32, 32)).shape == (1, 3)


def test_unknown_timm_model():
    with pytest.raises(InputError, match="unknown timm model 'no_such_net'"):
        build_model("timm:no_such_net")


def test_a_given_module_builds_a_copy_only_while_given():
    net = torch.nn.Linear(3, 2)
    with given_modules({"Linear": net}):
        copy = build_model("python:Linear")
    assert copy is not net and torch.equal(copy.weight, net.weight)
    with pytest.raises(InputError, match="was given to spiral in Python"):
        build_model("python:Linear")
