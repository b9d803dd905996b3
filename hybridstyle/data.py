"""Training data: image folders or Hugging Face datasets, as random crops at random scales."""

from __future__ import annotations

import logging
import os
import random
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset

from .image_io import ImageLoadError, load_image, pil_to_tensor

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def find_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root``, recursively, sorted so every process sees the same order."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def random_crop(image: Image.Image, resolution: int, max_scale: float, rng: random.Random) -> Image.Image:
    """Resize so the short side is ``resolution * s`` with ``s`` uniform in [1, max_scale], then crop a square.

    Random scales show the decoder strokes and textures at several sizes, which is what lets users change
    stroke size with ``style_scale`` at inference.
    """
    short_side = resolution * rng.uniform(1.0, max(1.0, max_scale))
    scale = short_side / min(image.size)
    width, height = (max(resolution, round(s * scale)) for s in image.size)
    image = image.resize((width, height), Image.BICUBIC)
    left, top = rng.randint(0, width - resolution), rng.randint(0, height - resolution)
    return image.crop((left, top, left + resolution, top + resolution))


class RandomCropImages(Dataset):
    """Images as ``(3, resolution, resolution)`` float tensors in [0, 1], each read as a random crop.

    Unreadable files are skipped (another image is drawn) and counted; the count is in :attr:`num_skipped`
    and each bad file is logged once.

    Parameters:
        images: file paths, or a Hugging Face dataset (anything indexable giving dicts with ``image_column``).
        resolution: crop size in pixels.
        max_scale: largest random up-scaling before cropping.
        image_column: column holding the image when ``images`` is a dataset.
        seed: seeds the crop positions; with ``None``, crops follow Python's global RNG.
    """

    def __init__(self, images, resolution: int, max_scale: float = 2.0, image_column: str = "image", seed: int | None = None):
        if len(images) == 0:
            raise ValueError("the dataset has no images; check the folder (jpg, png, webp, bmp, tif) or the dataset name")
        self.images = images
        self.resolution = resolution
        self.max_scale = max_scale
        self.image_column = image_column
        self.rng = random.Random(seed) if seed is not None else random
        self.bad: set[int] = set()

    @property
    def num_skipped(self) -> int:
        return len(self.bad)

    def __len__(self) -> int:
        return len(self.images)

    def _load(self, index: int) -> Image.Image:
        item = self.images[index]
        if isinstance(item, dict):
            if self.image_column not in item:
                raise KeyError(f"dataset has no column {self.image_column!r}; pass --image_column with one of {list(item)}")
            item = item[self.image_column]
        return load_image(item, "training image")

    def __getitem__(self, index: int) -> torch.Tensor:
        for _ in range(len(self.images)):
            if index not in self.bad:
                try:
                    return pil_to_tensor(random_crop(self._load(index), self.resolution, self.max_scale, self.rng))[0]
                except (ImageLoadError, OSError) as err:
                    self.bad.add(index)
                    logger.warning("skipping unreadable training image %s: %s (%d skipped so far)", index, err, len(self.bad))
            index = (index + 1) % len(self.images)
        raise ValueError("none of the training images could be read; check the data folder")


def load_image_source(folder: str | None, dataset: str | None, split: str = "train"):
    """File list from ``folder`` or a ``datasets`` dataset (Hub name or local path) from ``dataset``."""
    if (folder is None) == (dataset is None):
        raise ValueError("give exactly one of a folder (--content_dir/--style_dir) or a dataset (--*_dataset)")
    if folder is not None:
        return find_images(folder)
    try:
        import datasets
    except ImportError:
        raise ImportError("--content_dataset/--style_dataset need the `datasets` package: pip install datasets") from None
    if os.path.isdir(dataset) and not any(Path(dataset).glob("*.arrow")) and not Path(dataset, "dataset_info.json").exists():
        return datasets.load_dataset("imagefolder", data_dir=dataset, split=split)
    if os.path.isdir(dataset) and Path(dataset, "dataset_info.json").exists():
        return datasets.load_from_disk(dataset)
    return datasets.load_dataset(dataset, split=split)
