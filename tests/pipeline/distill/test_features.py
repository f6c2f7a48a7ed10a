import pytest
import torch
import torchvision
from torch import nn

from spiralprune.core.errors import InputError
from spiralprune.pipeline.distill.features import OutputTap, auto_feature_pairs, make_adapter, probe
from spiralprune.pipeline.zoo.digits_resnet import digits_resnet


def test_stages_of_a_resnet_are_the_last_module_per_resolution() -> None:
    model = digits_resnet(width=8, blocks=(1, 1, 1, 1))
    result = probe(model, torch.randn(2, 1, 16, 16))
    assert result.stage_names == ["layer1", "layer2", "layer3", "layer4"]
    assert result.shapes["layer2"] == (2, 16, 8, 8)
    assert (result.embedding_module, result.embedding_dim) == ("fc", 64)


def test_stages_of_a_torchvision_model_with_a_features_container() -> None:
    model = torchvision.models.mobilenet_v2(num_classes=10)
    result = probe(model, torch.randn(2, 3, 64, 64))
    sizes = [result.shapes[name][2:] for name in result.stage_names]
    assert sizes == [(32, 32), (16, 16), (8, 8), (4, 4), (2, 2)]
    assert result.stage_names[-1] == "features"  # the container ends the last resolution
    assert result.embedding_module == "classifier.1"


def test_probe_leaves_the_training_mode_and_batch_norm_statistics_alone() -> None:
    model = digits_resnet(width=4, blocks=(1, 1, 1, 1)).train()
    before = model.stem[1].running_mean.clone()
    probe(model, torch.randn(2, 1, 8, 8) + 5)
    assert model.training and torch.equal(model.stem[1].running_mean, before)


def test_auto_pairs_match_a_pruned_student_to_its_teacher_by_spatial_size() -> None:
    sample = torch.randn(2, 1, 16, 16)
    student = probe(digits_resnet(width=4, blocks=(1, 1, 1, 1)), sample)
    teacher = probe(digits_resnet(width=8, blocks=(2, 2, 2, 2)), sample)
    assert auto_feature_pairs(student, teacher) == [(n, n) for n in ["layer1", "layer2", "layer3", "layer4"]]
    assert isinstance(make_adapter(student.shapes["layer3"], teacher.shapes["layer3"]), nn.Conv2d)


def test_auto_pairs_without_a_common_resolution_is_an_input_error() -> None:
    student = probe(digits_resnet(width=4, blocks=(1, 1, 1, 1)), torch.randn(2, 1, 16, 16))
    teacher = probe(digits_resnet(width=4, blocks=(1, 1, 1, 1)), torch.randn(2, 1, 40, 40))
    with pytest.raises(InputError, match="feature_pairs"):
        auto_feature_pairs(student, teacher)


def test_a_misspelt_module_name_suggests_the_nearest() -> None:
    with pytest.raises(InputError, match="did you mean 'layer2'"):
        probe(digits_resnet(width=4), torch.randn(2, 1, 8, 8), ["layr2"])


@pytest.mark.parametrize(
    ("student", "teacher", "adapter_type"),
    [((2, 4, 8, 8), (2, 16, 8, 8), nn.Conv2d), ((2, 5, 12), (2, 5, 32), nn.Linear), ((2, 12), (2, 32), nn.Linear)],
)
def test_adapter_maps_student_channels_to_teacher_channels(student, teacher, adapter_type) -> None:
    adapter = make_adapter(student, teacher)
    assert isinstance(adapter, adapter_type)
    assert adapter(torch.randn(student)).shape == teacher


def test_adapter_for_mismatched_spatial_sizes_is_an_input_error() -> None:
    with pytest.raises(InputError, match="same spatial size"):
        make_adapter((2, 4, 8, 8), (2, 16, 4, 4))


def test_tap_keeps_stage_outputs_and_the_classifier_input_until_removed() -> None:
    model = digits_resnet(width=4, blocks=(1, 1, 1, 1)).eval()
    tap = OutputTap(model, ["layer2"], "fc")
    images = torch.randn(3, 1, 8, 8)
    model(images)
    expected = model.layer2(model.layer1(model.stem(images)))
    assert torch.allclose(tap.features["layer2"], expected)
    assert tap.embedding.shape == (3, 32)
    tap.remove()
    tap.features.clear()
    model(images)
    assert tap.features == {}


def test_a_model_that_loops_over_its_blocks_pairs_its_deeper_stages():
    """torchvision's SSDlite calls backbone.features.0 and .1 and its extra blocks itself, never
    backbone.features: its stages are found one level deeper, where a classifier's top two levels have none."""
    detector = torchvision.models.detection.ssdlite320_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                           num_classes=3)
    found = probe(detector, torch.rand(1, 3, 64, 64))
    assert found.stage_names[:2] == ["backbone.features.0", "backbone.features.1"]
    assert [found.shapes[n][2:] for n in found.stage_names] == [(20, 20), (10, 10), (5, 5), (3, 3), (2, 2)]
    assert auto_feature_pairs(found, found) == [(n, n) for n in found.stage_names]
