"""Reading user images and masks safely, and converting between PIL images and tensors.

torch is imported only by the functions that make or take tensors: reading images needs only PIL and numpy, so the
onnxruntime runner (:class:`hybridstyle.onnx_export.OnnxStylizer`) works where PyTorch is not installed.
"""

from __future__ import annotations

import os
import warnings
from typing import TYPE_CHECKING, Union

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

# Refuse decompression bombs outright instead of letting PIL merely warn: a 40000x40000 PNG of a few KB would
# otherwise allocate gigabytes before anything can check its size.
MAX_IMAGE_PIXELS = 64_000_000

if TYPE_CHECKING:
    import torch

ImageInput = Union[str, "os.PathLike[str]", Image.Image, np.ndarray]


class ImageLoadError(ValueError):
    """An input could not be read as an image; the message says which input and what to do."""


def _open(source: ImageInput, what: str) -> Image.Image:
    if isinstance(source, Image.Image):
        image = source
        _check_size(image.width, image.height, what)
        try:
            image.load()  # a lazily opened, truncated file fails here, not deep inside the conversion
        except (OSError, SyntaxError) as err:
            raise ImageLoadError(f"{what}: the image is damaged or truncated ({err}); re-export or re-download it") from None
    elif isinstance(source, np.ndarray):
        return _from_array(source, what)
    elif isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if os.path.isdir(path):
            raise ImageLoadError(f"{what}: {path!r} is a folder; pass the path of one image file inside it")
        if os.path.exists(path) and not os.path.isfile(path):  # never opened: reading a pipe would wait forever
            raise ImageLoadError(f"{what}: {path!r} is not a regular file (a pipe, socket or device); pass an image file")
        if not os.path.isfile(path):
            raise ImageLoadError(
                f"{what}: no such file {path!r}; check the path (relative paths start from {os.getcwd()!r})"
            )
        image = _open_file(path, what)
    else:
        raise ImageLoadError(f"{what}: expected a path, PIL image or numpy array, got {type(source).__name__}")
    # Phones store portrait photos as landscape pixels plus an EXIF rotation tag.
    try:
        return ImageOps.exif_transpose(image)
    except Exception:  # a malformed EXIF block must not make the pixels unusable; show them unrotated
        return image


def _check_size(width: int, height: int, what: str) -> None:
    if width * height > MAX_IMAGE_PIXELS:
        raise ImageLoadError(
            f"{what}: {width}x{height} is too large, over the limit of {MAX_IMAGE_PIXELS:,} pixels; downscale it first"
        )


def _open_file(path: str, what: str) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # The size is checked against our own MAX_IMAGE_PIXELS below, from the header and before any pixel is
            # decoded, so PIL's warning is redundant (and PIL's global limit is left alone: the app is threaded).
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
        try:
            _check_size(image.width, image.height, f"{what} ({path!r})")
            image.load()
        except BaseException:
            image.close()
            raise
        return image
    except Image.DecompressionBombError as err:  # PIL's own hard limit, far above ours
        raise ImageLoadError(
            f"{what}: {path!r} is too large ({err}), over the limit of {MAX_IMAGE_PIXELS:,} pixels; downscale it first"
        ) from None
    except UnidentifiedImageError:
        raise ImageLoadError(f"{what}: {path!r} is not an image PIL can read; use PNG, JPEG, WebP, BMP or TIFF") from None
    except (OSError, SyntaxError) as err:
        raise ImageLoadError(f"{what}: {path!r} is damaged or truncated ({err}); re-export or re-download it") from None


def _from_array(array: np.ndarray, what: str) -> Image.Image:
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (3, 4)):
        raise ImageLoadError(f"{what}: array must be HxW, HxWx3 or HxWx4, got shape {array.shape}")
    if array.size == 0:
        raise ImageLoadError(f"{what}: array is empty")
    if np.issubdtype(array.dtype, np.floating):
        if not np.isfinite(array).all():
            raise ImageLoadError(f"{what}: array contains NaN or infinite values; replace them (e.g. np.nan_to_num) first")
        if array.min() < 0 or array.max() > 1:
            raise ImageLoadError(f"{what}: float arrays must hold values in [0, 1]; got [{array.min():.3g}, {array.max():.3g}]")
        array = (array * 255).round().astype(np.uint8)
    elif array.dtype == np.uint16:
        array = (array / 257).round().astype(np.uint8)
    elif array.dtype == bool:
        array = array.astype(np.uint8) * 255
    elif array.dtype != np.uint8:
        raise ImageLoadError(f"{what}: unsupported array dtype {array.dtype}; use uint8, uint16, bool or float in [0, 1]")
    return Image.fromarray(array)


def _to_rgb(image: Image.Image, what: str = "image") -> Image.Image:
    if image.mode == "F":
        # 32-bit float greyscale (TIFF): PIL's convert clips 0..1 to 0 and shows a black image. Scaled by its range.
        array = np.asarray(image, dtype=np.float64)
        low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
        # A resampled image over- and undershoots its range a little (0..1 becomes -0.002..1.003): that is clipped.
        scale = 1.0 if high <= 1.05 else 255.0 if high <= 255 * 1.05 else 65535.0
        if not (np.isfinite(low) and np.isfinite(high)) or low < -0.05 * scale or high > 65535 * 1.05:
            raise ImageLoadError(f"{what}: a floating-point image with values in [{low:.3g}, {high:.3g}]; save it with "
                                 "values in [0, 1] or as an 8- or 16-bit image")
        image = Image.fromarray((array / scale * 255).round().clip(0, 255).astype(np.uint8))
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: PIL's convert("L") clips instead of scaling, which turns most photos white.
        array = np.asarray(image, dtype=np.float64)
        # I;16 is always 0-65535 (a dark 16-bit image must stay dark); 32-bit "I" images may hold 8-bit values.
        scale = 65535.0 if image.mode != "I" or array.max() > 255 else 255.0
        image = Image.fromarray((array / scale * 255).round().clip(0, 255).astype(np.uint8))
    if image.mode == "CMYK":
        return image.convert("RGB")
    if "A" in image.getbands() or image.mode == "P" and "transparency" in image.info:
        # Transparent pixels carry arbitrary colours; show them over white, as viewers do.
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source: ImageInput, what: str = "image") -> Image.Image:
    """Read a path, PIL image or numpy array as an 8-bit RGB PIL image.

    Handles greyscale, palette, RGBA/LA (composited over white), CMYK, 16-bit and EXIF-rotated inputs. Raises
    :class:`ImageLoadError` with a message naming ``what`` for missing, corrupt, non-image or oversized inputs.
    """
    return _to_rgb(_open(source, what), what)


def load_mask(source: ImageInput | torch.Tensor, size: tuple[int, int], what: str = "mask") -> torch.Tensor:
    """Read a region mask as a float tensor ``(H, W)`` in [0, 1]; white (1) marks the region.

    ``size`` is the ``(width, height)`` it must have: a mask of another size is an error, not a silent resize,
    because a stretched mask paints the wrong region.
    """
    import torch

    if isinstance(source, torch.Tensor):
        mask = source.detach().float().cpu()
        if mask.dim() == 3 and mask.shape[0] == 1:
            mask = mask[0]
        if mask.dim() != 2:
            raise ValueError(f"{what}: tensor masks must be (H, W), got {tuple(source.shape)}")
        if not torch.isfinite(mask).all() or mask.min() < 0 or mask.max() > 1:
            raise ValueError(f"{what}: tensor masks must hold values in [0, 1]")
    else:
        image = _open(source, what)
        if "A" in image.getbands() and image.getextrema()[-1][0] < 255:
            # A painted layer (transparent where unpainted): the alpha channel is the mask.
            image = image.getchannel("A")
        mask = torch.from_numpy(np.asarray(_to_rgb(image, what).convert("L"), dtype=np.float32) / 255.0)
    height, width = mask.shape
    if (width, height) != tuple(size):
        raise ValueError(
            f"{what} is {width}x{height} but the content image is {size[0]}x{size[1]}; pass masks the size of the content"
        )
    return mask


def rgb_pixels(image: Image.Image) -> torch.Tensor:
    """The 8-bit pixels of an image as a read-only uint8 tensor ``(H, W, 3)``, sharing one copy with numpy."""
    import torch

    array = np.asarray(image if image.mode == "RGB" else image.convert("RGB"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # "not writable": it is only read
        return torch.from_numpy(array)


def uint8_tensor(image: Image.Image) -> torch.Tensor:
    """An RGB image as a uint8 tensor ``(1, 3, H, W)`` (one copy of its pixels; a quarter of the memory of floats)."""
    return rgb_pixels(image).permute(2, 0, 1)[None].contiguous()


def pil_to_tensor(image: Image.Image) -> torch.Tensor:
    """RGB PIL image to a float tensor ``(1, 3, H, W)`` in [0, 1]."""
    import torch

    # One 8-bit copy and one float copy: a 6000x6000 photo made five full-size float32 temporaries before.
    pixels = rgb_pixels(image)
    tensor = torch.empty((1, 3, *pixels.shape[:2]), dtype=torch.float32)
    return tensor.copy_(pixels.permute(2, 0, 1)[None]).div_(255.0)


def tensor_to_pil(tensor: torch.Tensor) -> Image.Image:
    """Tensor ``(1, 3, H, W)`` or ``(3, H, W)`` in [0, 1] to an RGB PIL image (values are clipped)."""
    if tensor.dim() == 4:
        if tensor.shape[0] != 1:
            raise ValueError(f"expected a single image, got a batch of {tensor.shape[0]}")
        tensor = tensor[0]
    array = tensor.detach().float().clamp(0, 1).mul_(255).round_().byte().permute(1, 2, 0).contiguous().cpu().numpy()
    return Image.fromarray(array)
