#!/usr/bin/env python
"""Build a training set: from Hugging Face datasets, or (the bundled models' set) from a shared data folder.

    .venv/bin/python scripts/prepare_data.py --out data/train \
        --content_dataset detection-datasets/coco --style_dataset huggan/wikiart --limit 2000
    .venv/bin/python scripts/prepare_data.py --shared ../shared/data --out data/train

Writes ``content/`` (photos, plus the artworks: paintings as content teach the decoder to rebuild painted textures
too), ``style/`` (artworks) and ``SOURCES.csv`` (one licence/attribution row per file).

With ``--content_dataset``/``--style_dataset`` (a Hub name, streamed so that only ``--limit`` images per dataset are
downloaded, or a local ``save_to_disk`` / image folder), the first ``--limit`` images of each are written as JPEGs.
Otherwise the set of the bundled models is rebuilt from ``--shared`` (``photos/`` and ``artworks/``, each with a
``SOURCES.csv``; a folder that is not in the repository) and scikit-image's bundled photos; files listed in
``data/holdout.txt`` are left out for evaluation.
"""

from __future__ import annotations

import argparse
import csv
import shutil
import sys
from pathlib import Path

from tqdm.auto import tqdm

ROOT = Path(__file__).resolve().parents[1]
SKIMAGE_PHOTOS = {
    "astronaut.png": ("Public domain", "NASA (Eileen Collins), via scikit-image"),
    "chelsea.png": ("CC0", "Stefan van der Walt, via scikit-image"),
    "coffee.png": ("CC0", "Rachel Michetti, via scikit-image"),
    "rocket.jpg": ("Public domain", "SpaceX (DSCOVR launch), via scikit-image"),
}


def read_holdout(path: Path) -> set[str]:
    return {line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")}


FIELDS = ["split", "file", "package", "version", "original_path", "licence", "author", "orig_size", "saved_size"]


def missing_shared_folder(shared: Path) -> str:
    """What to do when the shared data folder (not part of the repository) is not there."""
    return (
        f"no training data at {str(shared)!r} (it needs photos/SOURCES.csv and artworks/SOURCES.csv): the bundled "
        "models' training set comes from a data folder that is not in the repository. Build a set from Hugging Face "
        "datasets instead, e.g.\n"
        "  .venv/bin/python scripts/prepare_data.py --out data/train --content_dataset detection-datasets/coco "
        "--style_dataset huggan/wikiart --limit 2000\n"
        "or pass your own folders to scripts/train.py (--content_dir photos/ --style_dir artworks/), "
        "or point --shared at a folder with photos/ and artworks/."
    )


def dataset_rows(name: str, column: str, limit: int, split: str):
    """The first ``limit`` rows of a dataset: a local folder (``save_to_disk`` or images) or a Hub name, streamed."""
    sys.path.insert(0, str(ROOT))  # this checkout's hybridstyle, installed or not
    from hybridstyle.data import load_image_source

    if Path(name).is_dir():
        dataset = load_image_source(None, name, split)
        return dataset.select(range(min(limit, len(dataset))))
    import datasets

    return datasets.load_dataset(name, split=split, streaming=True).take(limit)


def export_dataset(name: str, column: str, limit: int, split: str, out: Path, targets: list[str], prefix: str
                   ) -> list[dict]:
    """Write up to ``limit`` images of dataset ``name`` into ``out/<target>/`` as ``<prefix>_<name>_<index>.jpg``;
    one SOURCES row per file."""
    from PIL import Image

    stem = prefix + "_" + "".join(c if c.isalnum() else "_" for c in Path(name.rstrip("/\\")).name)
    rows, skipped = [], 0
    for index, row in enumerate(tqdm(dataset_rows(name, column, limit, split), total=limit, desc=name)):
        if column not in row:
            raise SystemExit(f"{name} has no column {column!r}; pass --image_column with one of {sorted(row)}")
        image = row[column]
        try:
            if not isinstance(image, Image.Image):  # undecoded {"bytes": ..., "path": ...} or a path
                import io

                image = Image.open(io.BytesIO(image["bytes"]) if isinstance(image, dict) else image)
            image = image.convert("RGB")
        except Exception:  # one broken row must not stop a long export
            skipped += 1
            continue
        file = f"{stem}_{index:05d}.jpg"
        for target in targets:
            image.save(out / target / file, quality=95)
            rows.append({"split": target, "file": file, "package": f"Hugging Face dataset {name}",
                         "original_path": f"{split}[{index}]", "licence": f"see the dataset card of {name}",
                         "saved_size": f"{image.width}x{image.height}"})
    if skipped:
        print(f"{name}: skipped {skipped} unreadable image(s)")
    if not rows:
        raise SystemExit(f"{name} gave no readable images (split {split!r}, column {column!r})")
    return rows


def write_sources(out: Path, rows: list[dict]) -> None:
    with open(out / "SOURCES.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("content", "style")}
    print(f"wrote {out}: {counts['content']} content and {counts['style']} style images")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--shared", default=str(ROOT.parent / "shared" / "data"), help="folder with photos/ and artworks/")
    parser.add_argument("--out", default=str(ROOT / "data" / "train"))
    parser.add_argument("--holdout", default=str(ROOT / "data" / "holdout.txt"))
    parser.add_argument("--content_dataset", help="Hugging Face dataset of photos (Hub name or local folder)")
    parser.add_argument("--style_dataset", help="Hugging Face dataset of artworks (Hub name or local folder)")
    parser.add_argument("--image_column", default="image", help="image column of both datasets (default image)")
    parser.add_argument("--split", default="train", help="split of both datasets (default train)")
    parser.add_argument("--limit", type=int, default=2000, help="images taken from each dataset (default 2000)")
    args = parser.parse_args(argv)
    shared, out = Path(args.shared), Path(args.out)
    if (args.content_dataset is None) != (args.style_dataset is None):
        parser.error("give both --content_dataset and --style_dataset (or neither, to read --shared)")
    if args.content_dataset:
        for sub in ("content", "style"):
            (out / sub).mkdir(parents=True, exist_ok=True)
        rows = export_dataset(args.content_dataset, args.image_column, args.limit, args.split, out, ["content"], "photo")
        rows += export_dataset(args.style_dataset, args.image_column, args.limit, args.split, out, ["content", "style"],
                               "art")
        write_sources(out, rows)
        return
    if not all((shared / kind / "SOURCES.csv").is_file() for kind in ("photos", "artworks")):
        raise SystemExit(missing_shared_folder(shared))
    holdout = read_holdout(Path(args.holdout))
    for sub in ("content", "style"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    rows = []
    for kind, targets in (("photos", ["content"]), ("artworks", ["content", "style"])):
        with open(shared / kind / "SOURCES.csv", newline="", encoding="utf-8") as f:
            for row in tqdm(list(csv.DictReader(f)), desc=kind):
                if f"{kind}/{row['file']}" in holdout:
                    continue
                for target in targets:
                    shutil.copy2(shared / kind / row["file"], out / target / row["file"])
                    rows.append({"split": target, **row})
    try:
        import skimage.data
    except ImportError:
        print("scikit-image not installed: skipping its bundled photos (pip install scikit-image)")
    else:
        folder = Path(skimage.data.__file__).parent
        for name, (licence, author) in SKIMAGE_PHOTOS.items():
            shutil.copy2(folder / name, out / "content" / f"skimage_{name}")
            rows.append(
                {"split": "content", "file": f"skimage_{name}", "package": "scikit-image", "licence": licence, "author": author}
            )
    fields = ["split", "file", "package", "version", "original_path", "licence", "author", "orig_size", "saved_size"]
    with open(out / "SOURCES.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    counts = {s: sum(r["split"] == s for r in rows) for s in ("content", "style")}
    print(f"wrote {out}: {counts['content']} content and {counts['style']} style images, {len(holdout)} held out")


if __name__ == "__main__":
    main()
