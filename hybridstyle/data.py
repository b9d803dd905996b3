"""Training data: image folders or Hugging Face datasets, as random crops at random scales."""

from __future__ import annotations

import logging
import math
import os
import random
from pathlib import Path

import torch
from PIL import Image
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from .image_io import ImageLoadError, load_image, pil_to_tensor

logger = logging.getLogger(__name__)

NONE_READABLE = "none of the {count} training images could be read; check the data folder or dataset"
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def find_images(root: str | os.PathLike) -> list[Path]:
    """All image files under ``root``, recursively, sorted so every process sees the same order.

    Parameters:
        root: folder to search; files are recognised by extension (jpg, jpeg, png, webp, bmp, tif, tiff).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} does not exist")
    return sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())


def random_crop(image: Image.Image, resolution: int, max_scale: float, rng: random.Random) -> Image.Image:
    """Resize so the short side is ``resolution * s`` with ``s`` uniform in [1, max_scale], then crop a square.

    Random scales show the decoder strokes and textures at several sizes, which is what lets users change
    stroke size with ``style_scale`` at inference.

    Parameters:
        image: RGB image of any size.
        resolution: side of the square crop in pixels.
        max_scale: largest short side, as a multiple of ``resolution``.
        rng: source of the scale and position (``random`` module or a ``random.Random``).
    """
    short_side = resolution * rng.uniform(1.0, max(1.0, max_scale))
    scale = short_side / min(image.size)
    width, height = (max(resolution, round(s * scale)) for s in image.size)
    image = image.resize((width, height), Image.BICUBIC)
    left, top = rng.randint(0, width - resolution), rng.randint(0, height - resolution)
    return image.crop((left, top, left + resolution, top + resolution))


class RandomCropImages(Dataset):
    """Images as ``(3, resolution, resolution)`` float tensors in [0, 1], each read as a random crop.

    Unreadable files are skipped (the next image is used instead) and counted in :attr:`num_skipped`; each bad
    file is logged once with the running count. Decoded images can be kept in memory (``cache_mb``), already
    downscaled to the largest size a crop uses (short side ``resolution * max_scale``), so a small training set
    is decoded once instead of once per sample.

    Parameters:
        images: file paths, or a Hugging Face dataset (anything indexable giving dicts with ``image_column``).
        resolution: crop size in pixels.
        max_scale: largest random up-scaling before cropping.
        image_column: column holding the image when ``images`` is a dataset.
        seed: seeds the crop positions; with ``None``, crops follow Python's global RNG (which accelerate seeds
            and checkpoints).
        min_length: the dataset reports at least this length, cycling through the images, so a set smaller than
            a batch (e.g. one style image for per-style fine-tuning) still fills every batch with distinct crops.
        cache_mb: memory budget in MB for decoded images (per dataset and per process; each dataloader worker
            keeps its own copy of what it caches itself). 0 disables the cache.
    """

    def __init__(self, images, resolution: int, max_scale: float = 2.0, image_column: str = "image", seed: int | None = None,
                 min_length: int = 0, cache_mb: float = 0):
        if len(images) == 0:
            raise ValueError("the dataset has no images; check the folder (jpg, png, webp, bmp, tif) or the dataset name")
        self.images = images
        self.resolution = resolution
        self.max_scale = max_scale
        self.image_column = image_column
        self.rng = random.Random(seed) if seed is not None else random
        self.min_length = min_length
        self.cache_bytes = int(cache_mb * 2**20)
        self.cache: dict[int, Image.Image] = {}
        self._cached_bytes = 0
        self.bad: set[int] = set()

    @property
    def num_skipped(self) -> int:
        """How many images could not be read so far (in this process)."""
        return len(self.bad)

    @property
    def cache_size_mb(self) -> float:
        """Memory held by decoded images, in MB."""
        return self._cached_bytes / 2**20

    def __len__(self) -> int:
        return max(len(self.images), self.min_length)

    def describe(self, index: int) -> str:
        """The file name of image ``index``, or ``item <index>`` for dataset rows."""
        item = self.images[index] if not hasattr(self.images, "features") else None
        return str(item) if isinstance(item, (str, os.PathLike)) else f"item {index}"

    def load(self, index: int) -> Image.Image:
        """Decode image ``index`` at full size as RGB; raises :class:`ImageLoadError` (or ``OSError``) if unreadable."""
        item = self.images[index]
        if isinstance(item, dict):
            if self.image_column not in item:
                raise KeyError(f"dataset has no column {self.image_column!r}; pass --image_column with one of {list(item)}")
            item = item[self.image_column]
        return load_image(item, "training image")

    def _cache_size(self, size: tuple[int, int]) -> tuple[int, int]:
        # Crops never use more than a short side of resolution * max_scale: keep exactly that much detail.
        need = math.ceil(self.resolution * max(1.0, self.max_scale))
        scale = need / min(size)
        return size if scale >= 1 else tuple(max(need, round(s * scale)) for s in size)

    def _get_image(self, index: int) -> Image.Image:
        cached = self.cache.get(index)
        if cached is not None:
            return cached
        image = self.load(index)
        if self.cache_bytes:
            small = self._cache_size(image.size)
            if small != image.size:
                image = image.resize(small, Image.LANCZOS)
            nbytes = image.width * image.height * 3
            if self._cached_bytes + nbytes <= self.cache_bytes:
                self.cache[index] = image
                self._cached_bytes += nbytes
        return image

    def _mark_bad(self, index: int, err: Exception) -> None:
        self.bad.add(index)
        logger.warning("skipping unreadable training image %s: %s (%d of %d skipped so far)",
                       self.describe(index), err, len(self.bad), len(self.images))

    def readable_image(self, index: int) -> tuple[int, Image.Image]:
        """The first readable image at or after ``index`` (wrapping around) at full size, and its index.

        Parameters:
            index: where to start looking.
        """
        return self._first_readable(index, self.load)

    def _first_readable(self, index: int, load) -> tuple[int, Image.Image]:
        """``load`` the first image at or after ``index`` that is readable, marking unreadable ones on the way."""
        count = len(self.images)
        index %= count
        for _ in range(count):
            if index not in self.bad:
                try:
                    return index, load(index)
                except (ImageLoadError, OSError) as err:
                    self._mark_bad(index, err)
            index = (index + 1) % count
        raise ValueError(NONE_READABLE.format(count=count))

    def preload(self, progress: bool = True) -> None:
        """Decode every image once: fills the cache up to its budget and finds unreadable files up front.

        Warns once with the number of unreadable images; raises ``ValueError`` if none can be read.

        Parameters:
            progress: show a tqdm bar.
        """
        for index in tqdm(range(len(self.images)), desc="decoding images", disable=not progress, leave=False):
            if index in self.bad or index in self.cache:
                continue
            if self.cache_bytes and self._cached_bytes >= self.cache_bytes:
                break
            try:
                self._get_image(index)
            except (ImageLoadError, OSError) as err:
                self._mark_bad(index, err)
        if len(self.bad) == len(self.images):
            raise ValueError(NONE_READABLE.format(count=len(self.images)))
        if self.bad:
            logger.warning("%d of %d training images are unreadable and will be skipped", len(self.bad), len(self.images))

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        """A random crop of image ``index``; an ``(index, crop_seed)`` pair draws the crop from ``crop_seed`` alone
        (a sampler that seeds every sample makes the data stream independent of any global RNG, hence resumable)."""
        index, rng = (index[0], random.Random(index[1])) if isinstance(index, tuple) else (index, self.rng)
        _, image = self._first_readable(index, self._get_image)
        return pil_to_tensor(random_crop(image, self.resolution, self.max_scale, rng))[0]

class TeacherPairs(Dataset):
    """Distillation pairs written by ``scripts/make_teacher_set.py``: ``(3, 3, H, W)`` tensors in [0, 1] that stack
    the content, the style and the teacher's output of the pair.

    Only complete pairs are listed (a pair's ``NNNNN.json`` is written last), so a set still being written can be
    trained on; it is listed once, at construction. The content and its target are mirrored together, from the
    sample's seed (see :class:`RandomCropImages`), which doubles the pairs without changing what the teacher did.

    Parameters:
        folder: the teacher set's folder.
        min_length: the reported length is at least this (the pairs repeat), so a small set fills a global batch.
    """

    NAMES = ("content", "style", "target")

    def __init__(self, folder: str | os.PathLike, min_length: int = 1):
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise FileNotFoundError(f"teacher set {self.folder} does not exist; write it with scripts/make_teacher_set.py")
        self.stems = sorted(p.stem for p in self.folder.glob("[0-9]*.json"))
        if not self.stems:
            raise ValueError(f"{self.folder} holds no complete teacher pairs (NNNNN.json beside NNNNN_content.png, "
                             "_style.png and _target.png); write them with scripts/make_teacher_set.py")
        self.min_length = min_length

    def __len__(self) -> int:
        return max(len(self.stems), self.min_length)

    def __getitem__(self, index: int | tuple[int, int]) -> torch.Tensor:
        index, seed = index if isinstance(index, tuple) else (index, None)
        stem = self.stems[index % len(self.stems)]
        content, style, target = (pil_to_tensor(load_image(self.folder / f"{stem}_{name}.png", name))[0]
                                  for name in self.NAMES)
        if not content.shape == style.shape == target.shape:
            raise ValueError(f"teacher pair {self.folder / stem}: content {tuple(content.shape)}, style "
                             f"{tuple(style.shape)} and target {tuple(target.shape)} must have one size; rewrite it")
        if random.Random(seed).random() < 0.5:
            content, target = content.flip(-1), target.flip(-1)
        return torch.stack([content, style, target])


def load_image_source(folder: str | None, dataset: str | None, split: str = "train"):
    """File list from ``folder`` or a ``datasets`` dataset from ``dataset``.

    Parameters:
        folder: image folder, searched recursively.
        dataset: a Hub dataset name, a folder written by ``Dataset.save_to_disk`` / ``DatasetDict.save_to_disk``,
            or a plain folder of images (read with the ``imagefolder`` builder).
        split: split to use for Hub datasets, ``DatasetDict`` folders and image folders.
    """
    if (folder is None) == (dataset is None):
        raise ValueError("give exactly one of a folder (--content_dir/--style_dir) or a dataset (--*_dataset)")
    if folder is not None:
        return find_images(folder)
    try:
        import datasets
    except ImportError:
        raise ImportError("--content_dataset/--style_dataset need the `datasets` package: pip install datasets") from None
    path = Path(dataset)
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():  # DatasetDict.save_to_disk
            saved = datasets.load_from_disk(str(path))
            if split not in saved:
                raise ValueError(f"{dataset} has no split {split!r}; it has {list(saved)}")
            return saved[split]
        if (path / "state.json").is_file() or (path / "dataset_info.json").is_file():  # Dataset.save_to_disk
            return datasets.load_from_disk(str(path))
        return datasets.load_dataset("imagefolder", data_dir=str(path), split=split)
    return datasets.load_dataset(dataset, split=split)
