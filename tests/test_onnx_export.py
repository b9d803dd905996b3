"""ONNX export: the file runs in onnxruntime at sizes other than the export's and agrees with PyTorch.

Measured on tiny models (float32, CPU): max |ONNX - PyTorch| 6e-8 (HybridStyleFast) and 4e-7 (HybridStyle);
on hybridstyle-base and a default-size HybridStyleFast at 256x384 and 512x320, about 1e-6. The asserted tolerance,
1e-3, is a quarter of one 8-bit level.
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from conftest import TINY_CONFIG, make_image, make_texture
from PIL import Image

from hybridstyle import HybridStyle, HybridStyleFast, cli
from hybridstyle import onnx_export as ox

TOLERANCE = 1e-3


def tiny_fast() -> HybridStyleFast:
    torch.manual_seed(0)
    return HybridStyleFast(block_out_channels=(4, 8, 16)).eval()


def tiny_base() -> HybridStyle:
    torch.manual_seed(0)
    return HybridStyle(**TINY_CONFIG).eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> dict:
    """Each tiny model exported once for the module (an export takes seconds): {name: (model, path)}."""
    folder = tmp_path_factory.mktemp("onnx")
    out = {}
    for name, model in (("fast", tiny_fast()), ("base", tiny_base())):
        result = ox.export_onnx(model, folder / f"{name}.onnx", verify=False)  # the tests below check it themselves
        assert result.path == folder / f"{name}.onnx" and result.max_abs_diff is None
        out[name] = (model, result.path)
    return out


@pytest.mark.parametrize("name", ["fast", "base"])
def test_onnx_matches_pytorch_at_two_sizes_other_than_the_export_size(exported, name):
    model, path = exported[name]
    factor = model.downsample_factor
    runner = ox.OnnxStylizer(path)
    assert runner.downsample_factor == factor and runner.model_class == type(model).__name__
    generator = torch.Generator().manual_seed(0)
    # The export traced content (4f x 6f) and style (5f x 7f); these sizes differ in every dimension, and the styles'
    # sides are not multiples of anything, so a size baked into the graph (a Resize target, a statistics
    # denominator) would show here as a shape error or a wrong value.
    for content_hw, style_hw in [((3 * factor, 5 * factor), (37, 53)), ((7 * factor, 2 * factor), (90, 41))]:
        content, style = torch.rand(1, 3, *content_hw, generator=generator), torch.rand(1, 3, *style_hw, generator=generator)
        with torch.no_grad():
            expected = model(content, style).images.clamp(0, 1).numpy()
        got = runner.run(content.numpy(), style.numpy())
        assert got.shape == (1, 3, *content_hw) and got.dtype == np.float32
        assert np.abs(got - expected).max() <= TOLERANCE


def test_graph_declares_dynamic_sizes_and_metadata(exported):
    model, path = exported["fast"]
    graph = onnx.load(path).graph
    shapes = {i.name: [d.dim_param or d.dim_value for d in i.type.tensor_type.shape.dim] for i in graph.input}
    assert list(shapes) == ["content", "style"] and [o.name for o in graph.output] == ["image"]
    for name, shape in shapes.items():
        assert shape[:2] == [1, 3] and all(isinstance(d, str) for d in shape[2:]), f"{name} has fixed sides: {shape}"
    metadata = {p.key: p.value for p in onnx.load(path).metadata_props}
    assert metadata["hybridstyle.downsample_factor"] == str(model.downsample_factor)


@pytest.mark.parametrize("name", ["fast", "base"])
def test_onnx_stylizer_gives_what_stylize_gives(exported, name):
    model, path = exported[name]
    content, style = make_image(70, 45), make_texture(64, 40, seed=3)
    expected = np.asarray(model.stylize(content, style, style_scale=1.5), dtype=int)
    got = np.asarray(ox.OnnxStylizer(path).stylize(content, style, style_scale=1.5), dtype=int)
    assert got.shape == expected.shape == (45, 70, 3)
    assert np.abs(got - expected).max() <= 1  # one 8-bit level: float rounding before the uint8 conversion


def test_export_checks_itself_and_leaves_the_model_as_it_was(tmp_path):
    model = tiny_fast().train().to(torch.bfloat16)  # exported from a float32 copy
    result = ox.export_onnx(model, tmp_path / "sub" / "m.onnx")
    assert result.max_abs_diff is not None and result.max_abs_diff <= ox.PARITY_TOLERANCE
    assert len(result.checked_sizes) == 2 and result.opset == ox.DEFAULT_OPSET
    assert model.training and model.dtype == torch.bfloat16
    assert [p.name for p in (tmp_path / "sub").iterdir()] == ["m.onnx"], "one self-contained file, no temporary left"


def test_failed_check_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(ox, "PARITY_TOLERANCE", -1.0)  # any difference, even 0, now fails
    with pytest.raises(ValueError, match="disagrees with PyTorch"):
        ox.export_onnx(tiny_fast(), tmp_path / "m.onnx")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize(("name", "message"), [
    ("model.txt", "must be a file name ending in .onnx"),
    ("a_folder.onnx", "is a folder"),
    ("a_file/model.onnx", "is a file, not a folder"),
])
def test_bad_export_paths_are_refused_clearly(tmp_path, name, message):
    (tmp_path / "a_folder.onnx").mkdir()
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(ValueError, match=message):
        ox.export_onnx(tiny_fast(), tmp_path / name)


def test_bad_opset_is_refused(tmp_path):
    with pytest.raises(ValueError, match="opset must be between 18 and 23"):
        ox.check_export(tmp_path / "m.onnx", opset=11)


def test_runner_rejects_missing_and_foreign_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="hybridstyle export-onnx"):
        ox.OnnxStylizer(tmp_path / "missing.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a protobuf")
    with pytest.raises(ValueError, match="not an ONNX model"):
        ox.OnnxStylizer(tmp_path / "junk.onnx")


def test_runner_rejects_content_sides_that_are_not_multiples(exported):
    model, path = exported["fast"]
    content = np.zeros((1, 3, model.downsample_factor + 1, 16), np.float32)
    with pytest.raises(ValueError, match=f"multiples of {model.downsample_factor}"):
        ox.OnnxStylizer(path).run(content, np.zeros((1, 3, 16, 16), np.float32))


def test_cli_export_onnx(tmp_path, offline, capsys):
    model_dir = tmp_path / "model"
    tiny_fast().save_pretrained(model_dir)
    out = tmp_path / "fast.onnx"
    assert cli.main(["export-onnx", str(out), "--model", str(model_dir), "--opset", "18"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out} (HybridStyleFast, opset 18)" in printed and "max |ONNX - PyTorch|" in printed
    assert onnx.load(out).opset_import[0].version == 18
    image = ox.OnnxStylizer(out).stylize(make_image(40, 30), make_texture(32, 32))
    assert isinstance(image, Image.Image) and image.size == (40, 30)


@pytest.mark.parametrize(("name", "message"), [("fast.txt", "ending in .onnx"), ("a_file/fast.onnx", "is a file")])
def test_cli_export_onnx_bad_path_fails_before_loading_the_model(tmp_path, offline, capsys, monkeypatch, name, message):
    monkeypatch.setattr(HybridStyle, "from_pretrained", lambda *a, **k: pytest.fail("model loaded before the path check"))
    (tmp_path / "a_file").write_text("x")
    assert cli.main(["export-onnx", str(tmp_path / name)]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_exporter_packages_say_what_to_install(tmp_path, monkeypatch):
    import importlib.util

    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "onnxscript" else real_find_spec(name, *a))
    with pytest.raises(ImportError, match=r"pip install 'hybridstyle\[onnx\]'"):
        ox.check_export(tmp_path / "m.onnx")


# Run in a fresh interpreter where torch (and everything built on it) cannot be imported, as on a machine with only
# onnxruntime, pillow and numpy: a meta path finder raises ModuleNotFoundError as a missing package does.
NO_TORCH = """
import sys
from importlib.abc import MetaPathFinder

BLOCKED = ("torch", "torchvision", "diffusers", "transformers", "accelerate", "safetensors")

class NoTorch(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None

sys.meta_path.insert(0, NoTorch())
from hybridstyle.onnx_export import OnnxStylizer

stylizer = OnnxStylizer(sys.argv[1])
stylizer.stylize(sys.argv[2], sys.argv[3]).save(sys.argv[4])
try:
    stylizer.stylize(sys.argv[2], sys.argv[3], max_size=8)
except ValueError as err:
    print("refused:", err)
assert not any(name.split(".")[0] in BLOCKED for name in sys.modules), sorted(sys.modules)
"""


def test_onnx_stylizer_runs_without_torch(exported, tmp_path):
    import subprocess
    import sys

    from conftest import REPO_ROOT

    make_image(56, 40).save(tmp_path / "content.png")
    make_texture(32, 32, seed=1).save(tmp_path / "style.png")
    out = tmp_path / "out.png"
    path = exported["fast"][1]
    result = subprocess.run([sys.executable, "-c", NO_TORCH, str(path), str(tmp_path / "content.png"),
                             str(tmp_path / "style.png"), str(out)], capture_output=True, text=True, timeout=120,
                            cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    assert "refused: content is 56x40, over max_size=8" in result.stdout
    # The same pixels as the runner gives with torch installed.
    expected = ox.OnnxStylizer(path).stylize(tmp_path / "content.png", tmp_path / "style.png")
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))


def test_runner_min_side_is_that_of_stylize():
    from hybridstyle import stylize_images

    assert ox.MIN_SIDE == stylize_images.MIN_SIDE
