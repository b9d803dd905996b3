"""Fuzz cases that once gave silent wrong results or raw internal errors: bad images, hostile configs, bad arguments.

Every case must end in an image or in a clear error of the kinds the command line and the app report (ValueError,
including ImageLoadError, or OSError for damaged weights): never a TypeError, RuntimeError or a hang. Seeded and small,
so the whole file runs in seconds.
"""

from __future__ import annotations

import io
import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image, make_texture
from PIL import Image

from hybridstyle import HybridStyle, HybridStyleFast, cli
from hybridstyle.image_io import ImageLoadError, load_image, load_mask

CLEAR_ERRORS = (ValueError, OSError)  # ImageLoadError is a ValueError


@pytest.fixture(scope="module")
def model() -> HybridStyleFast:
    torch.manual_seed(0)
    return HybridStyleFast(block_out_channels=(4, 8, 16)).eval()


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` with almost no pixel data (a decompression bomb's shape)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


def _encoded(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _bad_image_files(folder: Path) -> dict[str, Path]:
    photo = make_image(40, 30)
    png, jpeg = _encoded(photo, "PNG"), _encoded(photo, "JPEG", quality=90)
    contents = {
        "empty.png": b"",
        "text.jpg": b"this is not a picture",
        "random.png": np.random.default_rng(0).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
        "truncated.png": png[: len(png) // 2],
        "truncated.jpg": jpeg[: len(jpeg) // 3],
        "header_only.png": png[:33],
        "bomb.png": _png_header(50000, 50000),
        "zero_width.png": _png_header(0, 10),
        "html.webp": b"<html><body>404 not found</body></html>",
    }
    paths = {}
    for name, data in contents.items():
        paths[name] = folder / name
        paths[name].write_bytes(data)
    rng = np.random.default_rng(1)
    for i in range(12):  # random byte flips past the signature: damaged downloads
        data = bytearray(png if i % 2 else jpeg)
        for position in rng.integers(8, len(data), 6):
            data[position] = int(rng.integers(0, 256))
        paths[f"flipped_{i}.{'png' if i % 2 else 'jpg'}"] = folder / f"flipped_{i}.{'png' if i % 2 else 'jpg'}"
        paths[f"flipped_{i}.{'png' if i % 2 else 'jpg'}"].write_bytes(bytes(data))
    (folder / "a_folder.png").mkdir()
    paths["a_folder.png"] = folder / "a_folder.png"
    os.mkfifo(folder / "pipe.jpg")
    paths["pipe.jpg"] = folder / "pipe.jpg"
    os.symlink(folder / "loop.png", folder / "loop.png")
    paths["loop.png"] = folder / "loop.png"
    paths["missing.png"] = folder / "missing.png"
    return paths


def _odd_images() -> dict[str, Image.Image]:
    """Images of every PIL mode and shape that must read as sensible RGB (not black, not a crash)."""
    ramp = np.linspace(0, 1, 32 * 24, dtype=np.float32).reshape(24, 32)
    return {
        "1": Image.fromarray(ramp > 0.5),
        "L": Image.fromarray((ramp * 255).astype(np.uint8)),
        "F": Image.fromarray(ramp),
        "F255": Image.fromarray(ramp * 255),
        "I;16": Image.fromarray((ramp * 65535).astype(np.uint16)),
        "I": Image.fromarray((ramp * 65535).astype(np.int32)),
        "LA": Image.fromarray((ramp * 255).astype(np.uint8)).convert("LA"),
        "P": make_image(32, 24).convert("P"),
        "RGBA": make_image(32, 24).convert("RGBA"),
        "CMYK": make_image(32, 24).convert("CMYK"),
        "YCbCr": make_image(32, 24).convert("YCbCr"),
        "HSV": make_image(32, 24).convert("HSV"),
        "LAB": make_image(32, 24).convert("LAB"),
        "1x1": Image.new("RGB", (1, 1), "red"),
        "strip": Image.new("RGB", (500, 1), "blue"),
    }


def test_bad_image_files_are_clear_errors_everywhere(model, tmp_path, capsys):
    paths = _bad_image_files(tmp_path)
    good = make_texture(32, 32)
    for name, path in paths.items():
        for what, call in [
            ("load", lambda p: load_image(p, "style 1")),
            ("content", lambda p: model.stylize(p, good)),
            ("style", lambda p: model.stylize(make_image(40, 30), [good, p])),
            ("mask", lambda p: model.stylize(make_image(40, 30), good, masks=[p])),
        ]:
            try:
                result = call(path)
            except ImageLoadError as err:
                assert str(err).startswith(("style", "content", "mask")), (name, what, err)
                assert "Traceback" not in str(err)
            except ValueError as err:  # a readable flipped file of another size, used as a mask
                assert what == "mask" and "the size of the content" in str(err), (name, what, err)
            else:
                assert name.startswith("flipped_") and isinstance(result, (Image.Image, torch.Tensor)), (name, what)
    # The command line says which file and why, with no traceback, for each kind.
    for name in ("pipe.jpg", "a_folder.png", "bomb.png", "text.jpg", "missing.png"):
        code = cli.main(["stylize", str(paths[name]), str(tmp_path / "style.png"), "-o", str(tmp_path / "out.png")])
        err = capsys.readouterr().err
        assert code == 2 and "hybridstyle: error:" in err and "Traceback" not in err, (name, err)
        assert name != "pipe.jpg" or "is not a regular file" in err, err
    pipe_message = str(pytest.raises(ImageLoadError, load_image, paths["pipe.jpg"]).value)
    assert "is not a regular file" in pipe_message  # it exists: "no such file" would send the user looking for it


def test_images_of_every_mode_read_as_sensible_rgb(model):
    for name, image in _odd_images().items():
        rgb = load_image(image, name)
        assert rgb.mode == "RGB" and rgb.size == image.size, name
        if name in ("F", "F255", "I;16", "I", "L", "LA"):
            grey = np.asarray(rgb, dtype=float)[..., 0]
            assert grey[0, 0] < 10 and grey[-1, -1] > 245, name  # the ramp survives: not black, not white
        assert model.stylize(make_image(40, 30), image).size == (40, 30), name  # each works as a style
        mask = load_mask(image.resize((40, 30)) if image.size != (40, 30) else image, (40, 30), name)
        assert mask.shape == (30, 40) and 0 <= float(mask.min()) <= float(mask.max()) <= 1, name


@pytest.mark.parametrize(
    "array",
    [np.full((8, 8), np.nan, np.float32), np.full((8, 8, 3), -1.0), np.zeros((0, 5, 3), np.uint8), np.zeros((4, 4, 2)),
     np.zeros((4, 4), np.complex64), np.zeros((2, 2, 2, 2)), np.array([["a"]])],
    ids=["nan", "negative", "empty", "2-channel", "complex", "4-d", "strings"],
)
def test_bad_arrays_are_clear_errors(model, array):
    with pytest.raises(ImageLoadError):
        model.stylize(array, make_texture(32, 32))


def test_nan_and_negative_float_tiffs_are_refused(tmp_path):
    for name, values in {"nan": np.full((8, 8), np.nan), "inf": np.full((8, 8), np.inf), "negative": -np.ones((8, 8))}.items():
        Image.fromarray(values.astype(np.float32)).save(tmp_path / f"{name}.tif")
        with pytest.raises(ImageLoadError, match="a floating-point image with values in"):
            load_image(tmp_path / f"{name}.tif", "content")


# ---- hostile configs --------------------------------------------------------------------------------------------------

HOSTILE_VALUES = [None, "16", -1, 0, 65536, 2**40, 1.5, True, [], [[4]], [4], [4, "8", 16], [4, 8, 16] * 3, {"a": 1}, "x" * 10000]


def test_hostile_config_values_are_clear_errors_naming_the_key(model, tmp_path):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    good = json.loads((folder / "config.json").read_text())
    rng = np.random.default_rng(0)
    keys = [k for k in good if not k.startswith("_")] + ["_class_name", "_use_default_values"]
    cases = [(key, value) for key in keys for value in HOSTILE_VALUES]
    # And a few configs with several keys wrong at once.
    cases += [("several", {k: HOSTILE_VALUES[i] for k, i in zip(keys, rng.integers(0, len(HOSTILE_VALUES), len(keys)))})
              for _ in range(10)]
    for key, value in cases:
        config = {**good, **value} if key == "several" else {**good, key: value}
        (folder / "config.json").write_text(json.dumps(config))
        try:
            loaded = HybridStyle.from_pretrained(folder)
        except CLEAR_ERRORS as err:
            message = str(err)
            assert any(word in message for word in ("config.json", "weights", "holds a")), (key, value, message)
            if key != "several" and "weights" not in message:
                assert key in message or "holds a" in message, (key, value, message)  # "holds a 16 model, not a ..."
        else:  # only values the model accepts as they are (a string where any string goes)
            assert isinstance(loaded, HybridStyleFast), (key, value)


def test_hostile_config_files(model, tmp_path):
    folder = tmp_path / "model"
    model.save_pretrained(folder)
    texts = ["", "null", "[]", "{", '{"_class_name": null}', '{"_class_name": {"a": 1}}', "[" * 200000,
             '{"_class_name": "HybridStyleFast", "block_out_channels": ' + "[" * 50000 + "]" * 50000 + "}",
             '{"_class_name": "HybridStyleFast", "block_out_channels": [1e400, 8]}', "\x00\x01\x02"]
    for text in texts:
        (folder / "config.json").write_text(text, encoding="latin-1")
        with pytest.raises(ValueError):
            HybridStyle.from_pretrained(folder)


# ---- bad arguments ----------------------------------------------------------------------------------------------------

BAD_ARGUMENTS = [
    {"alpha": "0.5"}, {"alpha": None}, {"alpha": [1]}, {"alpha": float("nan")}, {"alpha": -0.1}, {"alpha": 1.5},
    {"style_scale": "2"}, {"style_scale": 0}, {"style_scale": float("inf")}, {"style_scale": None},
    {"mask_blur": 1e9, "masks": "one"}, {"mask_blur": -1, "masks": "one"}, {"mask_blur": "x", "masks": "one"},
    {"mask_blur": float("nan"), "masks": "one"},
    {"weights": []}, {"weights": ["a"]}, {"weights": [float("nan")]}, {"weights": [-1]}, {"weights": "0.5"},
    {"weights": [0]}, {"weights": [1, 2]}, {"weights": {"a": 1}},
    {"masks": []}, {"masks": [np.ones((3, 3))]}, {"masks": [torch.full((30, 40), float("nan"))]},
    {"masks": [np.ones((30, 40)) * 2]}, {"masks": ["no-such-mask.png"]}, {"masks": "one", "method": "wct", "tile": 64},
    {"method": "ADAIN"}, {"method": None}, {"method": "wct", "tile": 64},
    {"tile": -1}, {"tile": 7}, {"tile": "64"}, {"tile": 1.5}, {"max_size": "x"}, {"max_size": None}, {"max_size": 10},
]


@pytest.mark.parametrize("arguments", BAD_ARGUMENTS, ids=[repr(a)[:60] for a in BAD_ARGUMENTS])
def test_bad_arguments_are_value_errors(model, arguments):
    arguments = dict(arguments)
    if arguments.get("masks") == "one":
        arguments["masks"] = [np.ones((30, 40), bool)]
    with pytest.raises(ValueError) as caught:
        model.stylize(make_image(40, 30), make_texture(32, 32), **arguments)
    assert type(caught.value) in (ValueError, ImageLoadError)
    assert any(name.rstrip("s") in str(caught.value) for name in arguments), str(caught.value)  # names what is wrong
