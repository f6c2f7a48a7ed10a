"""The architectures the pruning and export tests run on, kept small so the whole matrix stays fast.

Sizes: CNNs at 32x32 (every torchvision CNN here downsamples by 32, so 32x32 is the smallest input
that keeps all stages); the vision transformer is torchvision's ``VisionTransformer`` class with the
``vit_b_16`` layout shrunk (32x32 images, 8x8 patches, 2 layers, 4 heads, width 64) because
``vit_b_16`` itself needs 224x224 inputs and 86 M parameters; the text transformer and the LSTM are
the zoo models at toy widths.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import torchvision
from torch import Tensor, nn
from torchvision.ops.misc import FrozenBatchNorm2d

from spiralprune.pipeline.models import build_model

VIT_SPEC = (
    "torchvision.models.vision_transformer:VisionTransformer"
    "?image_size=32&patch_size=8&num_layers=2&num_heads=4&hidden_dim=64&mlp_dim=128&num_classes=10"
)
DEMO_SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=16&blocks=[1,1,1,1]"


@dataclass(frozen=True)
class Architecture:
    spec: str
    input_shape: tuple[int, ...]
    input_dtype: str = "float32"
    vocab: int = 0  # token ids are drawn below this for int64 inputs
    num_classes: int = 10

    def example(self, batch: int = 2, seed: int = 0) -> Tensor:
        generator = torch.Generator().manual_seed(seed)
        shape = (batch, *self.input_shape[1:])
        if self.input_dtype == "int64":
            return torch.randint(0, self.vocab, shape, generator=generator)
        return torch.randn(shape, generator=generator)

    def calibration(self, batches: int = 2) -> list[tuple[Tensor, Tensor]]:
        generator = torch.Generator().manual_seed(1)
        return [
            (self.example(batch=4, seed=10 + i), torch.randint(0, self.num_classes, (4,), generator=generator))
            for i in range(batches)
        ]

    def build(self) -> nn.Module:
        torch.manual_seed(0)
        return randomize(build_model(self.spec)).eval()


ARCHITECTURES = {
    "resnet18": Architecture("torchvision:resnet18?num_classes=10", (1, 3, 32, 32)),
    "resnet50": Architecture("torchvision:resnet50?num_classes=10", (1, 3, 32, 32)),
    "mobilenet_v2": Architecture("torchvision:mobilenet_v2?num_classes=10", (1, 3, 32, 32)),
    "mobilenet_v3_small": Architecture("torchvision:mobilenet_v3_small?num_classes=10", (1, 3, 32, 32)),
    "efficientnet_b0": Architecture("torchvision:efficientnet_b0?num_classes=10", (1, 3, 32, 32)),
    "vit": Architecture(VIT_SPEC, (1, 3, 32, 32)),
    "text_transformer": Architecture(
        "spiralprune.pipeline.zoo.text_transformer:text_transformer?vocab_size=100&seq_len=16&d_model=32&nhead=4"
        "&dim_feedforward=64&num_classes=4",
        (1, 16),
        input_dtype="int64",
        vocab=100,
        num_classes=4,
    ),
    "lstm": Architecture("spiralprune.pipeline.zoo.lstm:lstm_classifier?n_features=8&hidden=32", (1, 10, 8)),
    "demo": Architecture(DEMO_SPEC, (1, 1, 32, 32)),
    # torchvision's detection backbones normalise with FrozenBatchNorm2d (buffers, no parameters)
    "frozen_bn": Architecture("tests.architectures:frozen_bn_resnet18", (1, 3, 32, 32)),
}
HEAVY = {"resnet50", "efficientnet_b0", "mobilenet_v2"}


def frozen_bn_resnet18(num_classes: int = 10) -> nn.Module:
    """ResNet-18 normalised as torchvision's detection backbones are."""
    return torchvision.models.resnet18(num_classes=num_classes, norm_layer=FrozenBatchNorm2d)


def randomize(model: nn.Module) -> nn.Module:
    """Non-trivial BatchNorm statistics and classifier weights.

    Freshly initialised torchvision models have identity BatchNorms (every BN-scale score equal) and
    near-zero (MobileNet) or all-zero (ViT) classifiers, whose outputs would hide any pruning error.
    """
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, (nn.modules.batchnorm._BatchNorm, FrozenBatchNorm2d)):
                module.weight.copy_(torch.rand(module.weight.shape, generator=generator) + 0.5)
                module.bias.copy_(torch.randn(module.bias.shape, generator=generator) * 0.1)
                module.running_mean.copy_(torch.randn(module.running_mean.shape, generator=generator) * 0.1)
                module.running_var.copy_(torch.rand(module.running_var.shape, generator=generator) + 0.5)
            elif type(module) is nn.Linear:
                module.reset_parameters()
    return model


def output_tolerance(reference: Tensor) -> float:
    return 1e-5 * max(1.0, float(reference.abs().max()))


@cache
def built(name: str) -> nn.Module:
    """One randomized instance per architecture, shared by the tests that only read it."""
    return ARCHITECTURES[name].build()
