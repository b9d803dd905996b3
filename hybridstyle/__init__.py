"""hybridstyle: arbitrary style transfer and style fusion, Hugging Face native.

Importing the package is cheap; torch and diffusers load on first use of a model class.
"""

from __future__ import annotations

import os

# Before anything can import torch: OpenMP threads that finish a parallel region spin-wait for the next one by default,
# which on an oversubscribed CPU (other jobs, load above the core count) burns the very cores the other threads wait
# for: a 512 px stylization went from 0.07 s quiet to 1.6 s at load 6 on 2 cores. PASSIVE makes them sleep instead.
# libgomp reads the variable once, when torch loads, so this only helps if hybridstyle is imported before torch (the
# `hybridstyle` command and app.py are); setdefault keeps a value the user set.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import importlib
from typing import TYPE_CHECKING

__version__ = "0.1.0"

_LAZY = {
    "HybridStyle": "modeling_hybridstyle",
    "HybridStyleOutput": "modeling_hybridstyle",
    "HybridStyleFast": "modeling_hybridstyle_fast",
    "HybridStylePipeline": "pipeline_hybridstyle",
    "HybridStylePipelineOutput": "pipeline_hybridstyle",
    "MultiScaleDiscriminator": "discriminator",
    "load_image": "image_io",
    "ImageLoadError": "image_io",
}
__all__ = sorted(_LAZY)

if TYPE_CHECKING:
    from .discriminator import MultiScaleDiscriminator as MultiScaleDiscriminator
    from .image_io import ImageLoadError as ImageLoadError
    from .image_io import load_image as load_image
    from .modeling_hybridstyle import HybridStyle as HybridStyle
    from .modeling_hybridstyle import HybridStyleOutput as HybridStyleOutput
    from .modeling_hybridstyle_fast import HybridStyleFast as HybridStyleFast
    from .pipeline_hybridstyle import HybridStylePipeline as HybridStylePipeline
    from .pipeline_hybridstyle import HybridStylePipelineOutput as HybridStylePipelineOutput


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    if name == "ModelMixin":
        # A saved pipeline's model_index.json names its component ["hybridstyle", "HybridStyleFast"]; diffusers then
        # looks up its base classes (ModelMixin, ...) on this package to pick the loading method.
        from diffusers.models.modeling_utils import ModelMixin

        return ModelMixin
    raise AttributeError(f"module 'hybridstyle' has no attribute {name!r}")
