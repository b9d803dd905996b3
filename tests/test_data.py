"""Training data: image discovery, random crops, unreadable files, the decoded-image cache, HF datasets."""

from __future__ import annotations

import logging
import random
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from hybridstyle.data import RandomCropImages, find_images, load_image_source, random_crop


def texture(seed: int, size: tuple[int, int] = (80, 60)) -> Image.Image:
    rng = np.random.default_rng(seed)
    small = rng.integers(0, 256, (size[1] // 4, size[0] // 4, 3), dtype=np.uint8)
    return Image.fromarray(small).resize(size, Image.BICUBIC)


@pytest.fixture
def image_dir(tmp_path):
    folder = tmp_path / "images"
    (folder / "sub").mkdir(parents=True)
    texture(0).save(folder / "b.png")
    texture(1).save(folder / "a.jpg")
    texture(2).save(folder / "sub" / "c.WEBP")
    (folder / "notes.txt").write_text("not an image")
    return folder


def test_find_images_is_recursive_sorted_and_filters_extensions(image_dir):
    found = find_images(image_dir)
    assert [p.relative_to(image_dir).as_posix() for p in found] == ["a.jpg", "b.png", "sub/c.WEBP"]


def test_find_images_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        find_images(tmp_path / "nope")


@pytest.mark.parametrize("size", [(80, 60), (30, 200), (64, 64)])
def test_random_crop_size(size):
    rng = random.Random(0)
    for _ in range(5):
        assert random_crop(texture(0, size), 64, 2.0, rng).size == (64, 64)


def test_dataset_items_are_crops_in_unit_range(image_dir):
    data = RandomCropImages(find_images(image_dir), 32, 2.0, seed=0)
    assert len(data) == 3
    item = data[1]
    assert item.shape == (3, 32, 32) and item.dtype == torch.float32
    assert 0.0 <= item.min() and item.max() <= 1.0 and item.std() > 0.01


def test_a_seeded_item_is_the_same_crop_whatever_came_before(image_dir):
    data = RandomCropImages(find_images(image_dir), 32, 2.0)  # unseeded: plain indices follow the global RNG
    first = data[(1, 1234)]
    random.seed(99)
    data[0], data[(2, 5)]
    assert torch.equal(data[(1, 1234)], first)
    assert not torch.equal(data[(1, 4321)], first)


def test_empty_dataset_is_a_clear_error():
    with pytest.raises(ValueError, match="no images"):
        RandomCropImages([], 32)


def test_min_length_repeats_a_single_image_with_different_crops(tmp_path):
    texture(3, (200, 200)).save(tmp_path / "style.png")
    data = RandomCropImages(find_images(tmp_path), 32, 2.0, seed=0, min_length=8)
    assert len(data) == 8
    batch = torch.stack([data[i] for i in range(8)])
    assert batch.shape == (8, 3, 32, 32)
    # Different random crops of the same image, not 8 copies of one crop.
    assert (batch[1:] - batch[:1]).abs().flatten(1).amax(1).min() > 0.05


def test_unreadable_file_is_skipped_counted_and_warned(image_dir, caplog):
    (image_dir / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    files = find_images(image_dir)
    broken = [i for i, p in enumerate(files) if p.name == "broken.png"][0]
    data = RandomCropImages(files, 32, seed=0)
    with caplog.at_level(logging.WARNING, logger="hybridstyle.data"):
        item = data[broken]  # falls through to the next readable image
    assert item.shape == (3, 32, 32)
    assert data.num_skipped == 1
    assert "broken.png" in caplog.text and "1 of 4 skipped" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="hybridstyle.data"):
        data[broken]  # logged once per file
    assert "broken.png" not in caplog.text


def test_preload_reports_unreadable_files_up_front(image_dir, caplog):
    (image_dir / "zz_truncated.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    data = RandomCropImages(find_images(image_dir), 32, cache_mb=64)
    with caplog.at_level(logging.WARNING, logger="hybridstyle.data"):
        data.preload(progress=False)
    assert data.num_skipped == 1
    assert "1 of 4 training images are unreadable" in caplog.text
    assert len(data.cache) == 3


def test_no_readable_image_is_a_clear_error(tmp_path):
    for name in ("a.png", "b.jpg"):
        (tmp_path / name).write_bytes(b"garbage")
    data = RandomCropImages(find_images(tmp_path), 32)
    with pytest.raises(ValueError, match="none of the 2 training images could be read"):
        data[0]
    with pytest.raises(ValueError, match="none of the 2"):
        RandomCropImages(find_images(tmp_path), 32, cache_mb=8).preload(progress=False)


def test_cache_keeps_what_crops_need_and_respects_the_budget(tmp_path):
    texture(4, (400, 300)).save(tmp_path / "big.png")
    texture(5, (50, 40)).save(tmp_path / "small.png")
    data = RandomCropImages(find_images(tmp_path), 32, max_scale=2.0, cache_mb=64)
    data.preload(progress=False)
    sizes = {data.describe(i).rsplit("/", 1)[-1]: image.size for i, image in data.cache.items()}
    assert sizes == {"big.png": (85, 64), "small.png": (50, 40)}  # short side 32 * 2; small images never upscaled
    assert data.cache_size_mb == pytest.approx((85 * 64 + 50 * 40) * 3 / 2**20)
    tiny_budget = RandomCropImages(find_images(tmp_path), 32, cache_mb=1e-3)
    tiny_budget.preload(progress=False)
    assert tiny_budget.cache == {}
    assert tiny_budget[0].shape == (3, 32, 32)  # still served, decoded from disk


def test_cached_crops_match_uncached_crops(tmp_path):
    texture(6, (512, 384)).save(tmp_path / "photo.png")
    files = find_images(tmp_path)
    # max_scale 1: the crop size is fixed, so both read the same crop window and differ only by resampling
    # (LANCZOS into the cache vs BICUBIC straight from the file).
    cached = RandomCropImages(files, 64, 1.0, seed=7, cache_mb=64)
    plain = RandomCropImages(files, 64, 1.0, seed=7)
    for _ in range(4):
        assert (cached[0] - plain[0]).abs().mean() < 0.02


def test_dataset_rows_and_missing_column():
    rows = [{"image": texture(i), "label": i} for i in range(3)]
    data = RandomCropImages(rows, 32, seed=0)
    assert data[2].shape == (3, 32, 32)
    assert data.describe(0) == "item 0"
    with pytest.raises(KeyError, match="pass --image_column with one of \\['image', 'label'\\]"):
        RandomCropImages(rows, 32, image_column="img")[0]


def test_load_image_source_needs_exactly_one(image_dir):
    with pytest.raises(ValueError, match="exactly one"):
        load_image_source(None, None)
    with pytest.raises(ValueError, match="exactly one"):
        load_image_source(str(image_dir), "some/dataset")
    assert len(load_image_source(str(image_dir), None)) == 3


def test_load_image_source_without_datasets_says_what_to_install(monkeypatch, image_dir):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(ImportError, match="pip install datasets"):
        load_image_source(None, str(image_dir))


def test_local_hf_datasets(tmp_path, monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    folder = tmp_path / "imagefolder"
    folder.mkdir()
    for i in range(3):
        texture(i).save(folder / f"{i}.png")
    from_folder = load_image_source(None, str(folder))
    assert len(from_folder) == 3
    assert RandomCropImages(from_folder, 32, seed=0)[0].shape == (3, 32, 32)

    saved = tmp_path / "saved"
    datasets.Dataset.from_dict({"picture": [texture(i) for i in range(2)]}, features=datasets.Features(
        {"picture": datasets.Image()})).save_to_disk(str(saved))
    from_disk = load_image_source(None, str(saved))
    assert len(from_disk) == 2
    assert RandomCropImages(from_disk, 32, image_column="picture", seed=0)[1].shape == (3, 32, 32)

    saved_dict = tmp_path / "saved_dict"
    datasets.DatasetDict({"train": from_disk}).save_to_disk(str(saved_dict))
    assert len(load_image_source(None, str(saved_dict))) == 2
    with pytest.raises(ValueError, match="no split 'validation'"):
        load_image_source(None, str(saved_dict), split="validation")


def test_prepare_data_without_the_shared_folder_says_what_to_do(tmp_path):
    from conftest import load_script

    prepare = load_script("prepare_data")
    with pytest.raises(SystemExit) as stop:
        prepare.main(["--shared", str(tmp_path / "shared"), "--out", str(tmp_path / "train")])
    message = str(stop.value)
    assert "not in the repository" in message and "--content_dataset" in message and "--style_dataset" in message
    assert "--content_dir" in message and not (tmp_path / "train").exists()


def test_prepare_data_writes_training_folders_from_saved_hf_datasets(tmp_path, monkeypatch):
    """The path a user without the shared folder takes: datasets -> prepare_data.py -> folders train.py reads."""
    datasets = pytest.importorskip("datasets")
    from conftest import load_script

    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    features = datasets.Features({"image": datasets.Image(), "label": datasets.Value("int64")})
    for name, count, seed in (("photos", 4, 0), ("art", 3, 10)):
        datasets.Dataset.from_dict({"image": [texture(seed + i) for i in range(count)], "label": list(range(count))},
                                   features=features).save_to_disk(str(tmp_path / name))
    out = tmp_path / "train"
    prepare = load_script("prepare_data")
    prepare.main(["--out", str(out), "--content_dataset", str(tmp_path / "photos"), "--style_dataset",
                  str(tmp_path / "art"), "--limit", "3"])
    content, style = find_images(out / "content"), find_images(out / "style")
    # Three photos (the limit) plus the three artworks as content, as in the bundled models' set; artworks as styles.
    assert [p.name for p in content] == [f"art_art_{i:05d}.jpg" for i in range(3)] + [f"photo_photos_{i:05d}.jpg"
                                                                                      for i in range(3)]
    assert [p.name for p in style] == [f"art_art_{i:05d}.jpg" for i in range(3)]
    with Image.open(style[0]) as image:
        assert image.size == (80, 60) and image.mode == "RGB"
    import csv

    with open(out / "SOURCES.csv", newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 9 and all(r["licence"].startswith("see the dataset card of ") for r in rows)
    assert RandomCropImages(content, 32, seed=0)[5].shape == (3, 32, 32)

    with pytest.raises(SystemExit, match="no column 'picture'; pass --image_column with one of \\['image', 'label'\\]"):
        prepare.main(["--out", str(tmp_path / "other"), "--content_dataset", str(tmp_path / "photos"),
                      "--style_dataset", str(tmp_path / "art"), "--image_column", "picture"])
