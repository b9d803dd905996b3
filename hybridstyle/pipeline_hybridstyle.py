"""``HybridStylePipeline``: the HybridStyle models as a ``diffusers.DiffusionPipeline``.

The pipeline holds one component, ``model`` (a :class:`~hybridstyle.HybridStyle` or
:class:`~hybridstyle.HybridStyleFast`), and its ``__call__`` runs :func:`~hybridstyle.stylize_images.stylize_image`
on each content image, the code path of ``model.stylize``, so the images are bit-identical. What the pipeline adds is
the diffusers surface: ``model_index.json`` folders, ``DiffusionPipeline.from_pretrained``, ``to()``,
``set_progress_bar_config`` and ``push_to_hub``.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from diffusers import DiffusionPipeline
from diffusers.utils import BaseOutput, replace_example_docstring
from PIL import Image

from .image_io import ImageInput
from .modeling_hybridstyle import HybridStyle
from .registry import BUNDLED_MODELS, DEFAULT_MODEL
from .stylize_images import stylize_image

EXAMPLE_DOC_STRING = """
    Examples:
        ```py
        >>> from hybridstyle import HybridStylePipeline

        >>> pipe = HybridStylePipeline.from_pretrained("hybridstyle-fast")
        >>> images = pipe("content.jpg", ["style_a.jpg", "style_b.jpg"], weights=[0.7, 0.3]).images
        >>> images[0].save("stylized.png")
        ```
"""

# Accepted as one image; anything else must be a list or tuple of these (one output image each).
_IMAGE_TYPES = (str, os.PathLike, Image.Image)


@dataclass
class HybridStylePipelineOutput(BaseOutput):
    """Output of :class:`HybridStylePipeline`.

    Parameters:
        images (`list[PIL.Image.Image]`):
            One stylized image per content image, each of its content's size.
    """

    images: list[Image.Image]


class HybridStylePipeline(DiffusionPipeline):
    r"""Arbitrary style transfer and style fusion with a HybridStyle model.

    Parameters:
        model ([`HybridStyle`] or [`HybridStyleFast`]):
            The style transfer model; ``__call__`` runs the path of its ``stylize`` with it.
    """

    model_cpu_offload_seq = "model"

    def __init__(self, model: HybridStyle):
        super().__init__()
        if not isinstance(model, HybridStyle):
            raise TypeError(f"model must be a HybridStyle or HybridStyleFast, got {type(model).__name__}")
        self.register_modules(model=model)

    def register_modules(self, **kwargs) -> None:
        super().register_modules(**kwargs)
        self._record_library()

    def __setattr__(self, name: str, value) -> None:
        super().__setattr__(name, value)
        if name == "model" and hasattr(self, "_internal_dict"):
            self._record_library()

    def _record_library(self) -> None:
        # diffusers records a custom component by its full module path ("hybridstyle.modeling_hybridstyle_fast");
        # the package name is stable across file moves and resolves both classes through hybridstyle/__init__.py.
        model = self.__dict__.get("model")
        if model is not None:
            self.register_to_config(model=("hybridstyle", type(model).__name__))

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path: str | os.PathLike | None = None,
                        **kwargs) -> HybridStylePipeline:
        """Load a pipeline folder (``model_index.json``), a bundled model's name, or a bare model folder.

        Parameters:
            pretrained_model_name_or_path: a folder saved by ``save_pretrained``, a Hub id, a bundled name
                (``"hybridstyle-fast"``, ``"hybridstyle-base"``) or a model folder with only ``config.json``
                (wrapped into a pipeline). ``None`` loads the default bundled model.
            kwargs: those of ``diffusers.DiffusionPipeline.from_pretrained`` (``torch_dtype``, ...).
        """
        name = DEFAULT_MODEL if pretrained_model_name_or_path is None else os.fspath(pretrained_model_name_or_path)
        bundled = name in BUNDLED_MODELS and not os.path.isdir(name)
        bare_model = os.path.isdir(name) and not os.path.isfile(os.path.join(name, "model_index.json")) and \
            os.path.isfile(os.path.join(name, HybridStyle.config_name))
        if bundled or bare_model:
            # The bundled weights are model folders, not pipeline folders: load the model, then wrap it.
            return cls(model=HybridStyle.from_pretrained(name, **kwargs))
        return super().from_pretrained(name, **kwargs)

    def push_to_hub(self, repo_id: str, commit_message: str = "Upload HybridStylePipeline", private: bool | None = None,
                    token: str | None = None, **save_kwargs) -> str:
        """Save to a temporary folder (``model_index.json`` and ``model/``) and upload it as ``repo_id``.

        Parameters:
            repo_id: the Hub repository, ``"user/name"``; created if missing.
            commit_message: message of the upload commit.
            private: make a newly created repository private.
            token: Hub token; default is the logged-in one.
            save_kwargs: passed to ``save_pretrained``.

        Returns the URL of the commit.
        """
        from huggingface_hub import HfApi

        api = HfApi(token=token)
        repo_id = api.create_repo(repo_id, private=private, exist_ok=True).repo_id
        with tempfile.TemporaryDirectory() as tmp:
            self.save_pretrained(tmp, **save_kwargs)
            return api.upload_folder(repo_id=repo_id, folder_path=tmp, commit_message=commit_message)

    @torch.inference_mode()
    @replace_example_docstring(EXAMPLE_DOC_STRING)
    def __call__(
        self,
        image: ImageInput | Sequence[ImageInput],
        style_images: ImageInput | Sequence[ImageInput],
        weights: Sequence[float] | None = None,
        alpha: float = 1.0,
        preserve_color: bool = False,
        masks: Sequence[ImageInput | torch.Tensor] | None = None,
        mask_blur: float = 0.02,
        style_scale: float = 1.0,
        method: str = "adain",
        max_size: int = 8192,
        tile: int | None = None,
        quality: str | int = "fast",
        progress: bool | None = None,
        callback: Callable[[int, int, float], None] | None = None,
        return_dict: bool = True,
    ) -> HybridStylePipelineOutput | tuple[list[Image.Image]]:
        r"""Paint each content image in the style of ``style_images``.

        Parameters:
            image (`str`, `PIL.Image.Image`, `np.ndarray` or a list of them):
                The content image(s); one output image each.
            style_images (`str`, `PIL.Image.Image`, `np.ndarray` or a list of them):
                One style image or several, fused by ``weights`` or ``masks``.
            weights, alpha, preserve_color, masks, mask_blur, style_scale, method, max_size, tile, quality, callback:
                As in :meth:`HybridStyle.stylize`.
            progress (`bool`, *optional*):
                Show a progress bar over the tiles and refinement steps. ``None`` follows
                ``set_progress_bar_config(disable=...)`` (shown unless disabled).
            return_dict (`bool`, defaults to `True`):
                Return a [`HybridStylePipelineOutput`] rather than a plain tuple.

        Examples:

        Returns:
            [`HybridStylePipelineOutput`] or `tuple`: ``.images``, a list of PIL images.
        """
        contents = list(image) if isinstance(image, (list, tuple)) else [image]
        if not contents:
            raise ValueError("pass at least one content image")
        for i, content in enumerate(contents):
            if not (isinstance(content, _IMAGE_TYPES) or hasattr(content, "__array__")):
                raise TypeError(f"image {i + 1} must be a path, PIL image or numpy array (or a list of them), "
                                f"got {type(content).__name__}")
        if progress is None:
            progress = not getattr(self, "_progress_bar_config", {}).get("disable", False)
        images = [
            stylize_image(self.model, content, style_images, weights=weights, alpha=alpha, preserve_color=preserve_color,
                          masks=masks, mask_blur=mask_blur, style_scale=style_scale, method=method, max_size=max_size,
                          tile=tile, progress=progress, quality=quality, callback=callback)
            for content in contents
        ]
        self.maybe_free_model_hooks()
        if not return_dict:
            return (images,)
        return HybridStylePipelineOutput(images=images)
