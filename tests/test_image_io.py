"""Reading user images safely: every PIL mode, numpy arrays, and clear errors for bad input."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import make_image
from PIL import Image

from hybridstyle import image_io
from hybridstyle.image_io import ImageLoadError, load_image, load_mask, pil_to_tensor, tensor_to_pil


def _png_header_only(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels: a decompression bomb in a few bytes."""

    def chunk(kind: bytes, payload: bytes) -> bytes:
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64)) + chunk(b"IEND", b"")


@pytest.fixture
def jpeg_bytes() -> bytes:
    buffer = io.BytesIO()
    make_image(48, 32).save(buffer, format="JPEG", quality=90)
    return buffer.getvalue()


# ---- bad input -----------------------------------------------------------------------------------------------------


def test_load_image_is_a_value_error() -> None:
    assert issubclass(ImageLoadError, ValueError)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match=r"style 2: no such file .*nope\.png.*check the path"):
        load_image(tmp_path / "nope.png", "style 2")


def test_folder_instead_of_file(tmp_path: Path) -> None:
    with pytest.raises(ImageLoadError, match="is a folder; pass the path of one image file"):
        load_image(tmp_path)


def test_corrupt_bytes(tmp_path: Path) -> None:
    path = tmp_path / "corrupt.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 2)
    with pytest.raises(ImageLoadError, match="content: .*corrupt.png.*use PNG, JPEG, WebP, BMP or TIFF"):
        load_image(path, "content")


def test_text_file_renamed_png(tmp_path: Path) -> None:
    path = tmp_path / "notes.png"
    path.write_text("these are not pixels\n")
    with pytest.raises(ImageLoadError, match="is not an image PIL can read; use PNG, JPEG"):
        load_image(path)


def test_truncated_jpeg(tmp_path: Path, jpeg_bytes: bytes) -> None:
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_bytes[: len(jpeg_bytes) // 2])
    with pytest.raises(ImageLoadError, match="damaged or truncated.*re-export or re-download"):
        load_image(path)


def test_truncated_pil_image_passed_directly(tmp_path: Path) -> None:
    # Image.open is lazy: a user's own Image.open() of a cut PNG succeeds and fails only when the pixels are read.
    buffer = io.BytesIO()
    make_image(64, 48).save(buffer, format="PNG")
    path = tmp_path / "cut.png"
    path.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) * 2 // 3])
    image = Image.open(path)
    with pytest.raises(ImageLoadError, match="style 2: the image is damaged or truncated.*re-export or re-download"):
        load_image(image, "style 2")


def test_decompression_bomb_header(tmp_path: Path) -> None:
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_header_only(100_000, 100_000))
    assert path.stat().st_size < 200
    with pytest.raises(ImageLoadError, match=r"too large.*over the limit of 64,000,000 pixels; downscale it first"):
        load_image(path)


def test_pixel_limit_is_enforced_between_one_and_two_times_the_limit(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # PIL only warns below 2x its limit; we refuse anything over the limit.
    monkeypatch.setattr(image_io, "MAX_IMAGE_PIXELS", 1000)
    path = tmp_path / "big.png"
    make_image(40, 30).save(path)  # 1200 pixels
    previous = Image.MAX_IMAGE_PIXELS
    with pytest.raises(ImageLoadError, match=r"big.png.*40x30 is too large, over the limit of 1,000 pixels; downscale it first"):
        load_image(path)
    with pytest.raises(ImageLoadError, match="40x30 is too large, over the limit of 1,000 pixels; downscale it first"):
        load_image(make_image(40, 30))
    assert Image.MAX_IMAGE_PIXELS == previous, "PIL's global limit must be left alone"
    assert load_image(make_image(20, 20)).size == (20, 20)


def test_unsupported_input_type() -> None:
    with pytest.raises(ImageLoadError, match="expected a path, PIL image or numpy array, got int"):
        load_image(42)


# ---- PIL modes -----------------------------------------------------------------------------------------------------


def _rgb(image: Image.Image) -> np.ndarray:
    assert image.mode == "RGB"
    return np.asarray(image)


def test_greyscale_l() -> None:
    grey = Image.fromarray(np.arange(0, 250, 10, dtype=np.uint8).reshape(5, 5), "L")
    out = _rgb(load_image(grey))
    assert out.shape == (5, 5, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], np.asarray(grey))


def test_la_and_rgba_are_composited_over_white() -> None:
    la = Image.fromarray(np.stack([np.full((2, 2), 40, np.uint8), np.array([[0, 255], [128, 255]], np.uint8)], -1), "LA")
    out = _rgb(load_image(la))
    assert out[0, 0].tolist() == [255, 255, 255]  # fully transparent -> white
    assert out[0, 1].tolist() == [40, 40, 40]  # opaque -> its own value
    assert abs(int(out[1, 0, 0]) - round(40 * 128 / 255 + 255 * 127 / 255)) <= 1  # half -> blended

    rgba = np.zeros((2, 2, 4), np.uint8)
    rgba[..., 0] = 200  # red with garbage where transparent
    rgba[0, 0, 3], rgba[0, 1, 3] = 0, 255
    out = _rgb(load_image(Image.fromarray(rgba, "RGBA")))
    assert out[0, 0].tolist() == [255, 255, 255]
    assert out[0, 1].tolist() == [200, 0, 0]


def test_palette_with_transparency(tmp_path: Path) -> None:
    palette = Image.new("P", (4, 2))
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * 762)
    palette.putdata([0, 1, 0, 1, 1, 1, 0, 0])
    palette.info["transparency"] = 0
    path = tmp_path / "palette.png"
    palette.save(path, transparency=0)
    for source in (palette, path):
        out = _rgb(load_image(source))
        assert out[0, 0].tolist() == [255, 255, 255]  # transparent index -> white
        assert out[0, 1].tolist() == [0, 0, 255]
    opaque = palette.copy()
    opaque.info.pop("transparency")
    assert _rgb(load_image(opaque))[0, 0].tolist() == [255, 0, 0]


def test_cmyk(tmp_path: Path) -> None:
    cmyk = Image.new("CMYK", (3, 3), (0, 255, 255, 0))  # no cyan, full magenta and yellow = red
    path = tmp_path / "cmyk.jpg"
    cmyk.save(path, quality=95)
    assert _rgb(load_image(cmyk))[1, 1].tolist() == [255, 0, 0]
    r, g, b = _rgb(load_image(path))[1, 1].tolist()
    assert r > 230 and g < 25 and b < 25


def test_16_bit_greyscale_is_scaled_not_clipped(tmp_path: Path) -> None:
    ramp = np.linspace(0, 65535, 64 * 16).reshape(16, 64).astype(np.uint16)
    path = tmp_path / "grey16.png"
    Image.fromarray(ramp).save(path)
    opened = Image.open(path)
    assert opened.mode.startswith("I"), opened.mode
    out = _rgb(load_image(path))[..., 0].astype(np.float64)
    np.testing.assert_allclose(out, ramp / 257, atol=1)  # 65535 -> 255: the ramp survives
    assert out.mean() == pytest.approx(127.5, abs=2)  # PIL's own convert("L") would give a mostly white image
    dark = (ramp // 1024).astype(np.uint16)  # a dark 16-bit image (max 63) stays dark
    assert _rgb(load_image(Image.fromarray(dark)))[..., 0].max() <= 1


def test_float_and_16_bit_tiffs_are_scaled_by_their_range(tmp_path: Path) -> None:
    # A float32 TIFF (mode "F", values 0..1, as scientific and HDR tools write) used to read as a black image.
    ramp = np.linspace(0, 1, 64 * 16, dtype=np.float32).reshape(16, 64)
    Image.fromarray(ramp).save(tmp_path / "float.tif")
    with Image.open(tmp_path / "float.tif") as opened:
        assert opened.mode == "F"
    np.testing.assert_allclose(_rgb(load_image(tmp_path / "float.tif"))[..., 0], ramp * 255, atol=0.51)
    np.testing.assert_allclose(load_mask(tmp_path / "float.tif", (64, 16)).numpy(), ramp, atol=0.5 / 255 + 1e-6)
    Image.fromarray(ramp * 255).save(tmp_path / "float255.tif")  # 0..255 floats are 8-bit values
    np.testing.assert_allclose(_rgb(load_image(tmp_path / "float255.tif"))[..., 0], ramp * 255, atol=0.51)
    Image.fromarray((ramp * 65535).astype(np.uint16)).save(tmp_path / "grey16.tif")
    with Image.open(tmp_path / "grey16.tif") as opened:
        assert opened.mode.startswith("I;16")
    np.testing.assert_allclose(_rgb(load_image(tmp_path / "grey16.tif"))[..., 0], ramp * 255, atol=1)
    for name, values in {"nan": np.full((8, 8), np.nan, np.float32), "negative": ramp - 0.5}.items():
        Image.fromarray(values.astype(np.float32)).save(tmp_path / f"{name}.tif")
        with pytest.raises(ImageLoadError, match=r"style 2: a floating-point image with values in .*values in \[0, 1\]"):
            load_image(tmp_path / f"{name}.tif", "style 2")


def test_exif_rotated_jpeg(tmp_path: Path) -> None:
    image = make_image(60, 40)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 CW to display": phones store portraits this way
    path = tmp_path / "phone.jpg"
    image.save(path, exif=exif, quality=95)
    assert Image.open(path).size == (60, 40)
    loaded = load_image(path)
    assert loaded.size == (40, 60)
    pixels = np.asarray(loaded, dtype=np.float64)
    error = {
        turn: np.abs(pixels - np.asarray(image.transpose(turn), dtype=np.float64)).mean()
        for turn in (Image.ROTATE_270, Image.ROTATE_90)
    }
    assert error[Image.ROTATE_270] < 8  # JPEG loss only (the test image has some noise)
    assert error[Image.ROTATE_270] < error[Image.ROTATE_90] / 4  # and turned clockwise, not the other way


def test_path_types_and_pil_input(tmp_path: Path) -> None:
    image = make_image(20, 10)
    path = tmp_path / "img.png"
    image.save(path)
    for source in (path, str(path), image):
        np.testing.assert_array_equal(_rgb(load_image(source)), np.asarray(image))


# ---- numpy arrays --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("array", "expected_corner"),
    [
        (np.full((4, 5, 3), 200, np.uint8), [200, 200, 200]),
        (np.full((4, 5), 77, np.uint8), [77, 77, 77]),
        (np.full((4, 5, 1), 77, np.uint8), [77, 77, 77]),
        (np.full((4, 5, 3), 65535, np.uint16), [255, 255, 255]),
        (np.full((4, 5), 257 * 100, np.uint16), [100, 100, 100]),
        (np.full((4, 5, 3), 0.5, np.float32), [128, 128, 128]),
        (np.ones((4, 5), np.float64), [255, 255, 255]),
        (np.ones((4, 5), bool), [255, 255, 255]),
        (np.zeros((4, 5), bool), [0, 0, 0]),
        (np.dstack([np.full((4, 5, 3), 10, np.uint8), np.zeros((4, 5, 1), np.uint8)]), [255, 255, 255]),  # RGBA, clear
    ],
)
def test_numpy_arrays(array: np.ndarray, expected_corner: list[int]) -> None:
    out = _rgb(load_image(array))
    assert out.shape == (4, 5, 3)
    assert out[0, 0].tolist() == expected_corner


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.array([[0.5, np.nan]]), "NaN or infinite.*np.nan_to_num"),
        (np.array([[0.5, np.inf]]), "NaN or infinite"),
        (np.array([[0.5, 1.5]]), r"float arrays must hold values in \[0, 1\]"),
        (np.array([[-0.1, 0.5]]), r"float arrays must hold values in \[0, 1\]"),
        (np.zeros((4, 4, 2), np.uint8), "must be HxW, HxWx3 or HxWx4"),
        (np.zeros((2, 4, 4, 3), np.uint8), "must be HxW, HxWx3 or HxWx4"),
        (np.zeros(16, np.uint8), "must be HxW, HxWx3 or HxWx4"),
        (np.zeros((0, 4), np.uint8), "empty"),
        (np.zeros((4, 4), np.int64), "unsupported array dtype int64; use uint8, uint16, bool or float"),
    ],
)
def test_bad_numpy_arrays(array: np.ndarray, message: str) -> None:
    with pytest.raises(ImageLoadError, match=message):
        load_image(array, "style 1")


# ---- masks and tensors ---------------------------------------------------------------------------------------------


def test_load_mask_from_image_array_and_tensor() -> None:
    values = np.zeros((6, 8), np.uint8)
    values[:, :3] = 255
    expected = torch.from_numpy(values / 255.0).float()
    for source in (Image.fromarray(values), values, values.astype(bool), expected, expected[None]):
        mask = load_mask(source, (8, 6))
        assert mask.shape == (6, 8) and mask.dtype == torch.float32
        torch.testing.assert_close(mask, expected)


def test_load_mask_uses_alpha_of_a_painted_layer() -> None:
    layer = np.zeros((4, 4, 4), np.uint8)  # black paint...
    layer[:2, :, 3] = 255  # ...only on the top half
    mask = load_mask(Image.fromarray(layer, "RGBA"), (4, 4))
    torch.testing.assert_close(mask, torch.tensor([[1.0] * 4] * 2 + [[0.0] * 4] * 2))


def test_load_mask_errors() -> None:
    with pytest.raises(ValueError, match="mask 2 is 8x6 but the content image is 10x6; pass masks the size of the content"):
        load_mask(np.zeros((6, 8), np.uint8), (10, 6), "mask 2")
    with pytest.raises(ValueError, match=r"values in \[0, 1\]"):
        load_mask(torch.full((6, 8), 2.0), (8, 6))
    with pytest.raises(ValueError, match=r"must be \(H, W\)"):
        load_mask(torch.zeros(2, 6, 8), (8, 6))


def test_pil_tensor_round_trip() -> None:
    image = make_image(13, 7)
    tensor = pil_to_tensor(image)
    assert tensor.shape == (1, 3, 7, 13) and tensor.dtype == torch.float32
    assert 0 <= tensor.min() and tensor.max() <= 1
    np.testing.assert_array_equal(np.asarray(tensor_to_pil(tensor)), np.asarray(image))
    np.testing.assert_array_equal(np.asarray(tensor_to_pil(tensor[0])), np.asarray(image))
    clipped = np.asarray(tensor_to_pil(torch.tensor([-1.0, 0.5, 2.0]).view(1, 3, 1, 1)))
    assert clipped[0, 0].tolist() == [0, 128, 255]
    with pytest.raises(ValueError, match="single image"):
        tensor_to_pil(torch.zeros(2, 3, 4, 4))
