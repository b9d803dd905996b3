"""The `hybridstyle` command: what a user types in a shell, run in-process through ``cli.main``."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import make_image, make_texture
from PIL import Image

from hybridstyle import HybridStyle, cli


@pytest.fixture
def files(tmp_path: Path, tiny_model) -> dict[str, Path]:
    model_dir = tmp_path / "model"
    tiny_model.save_pretrained(model_dir)
    paths = {"model": model_dir, "content": tmp_path / "photo.jpg", "a": tmp_path / "a.png", "b": tmp_path / "b.png"}
    make_image(70, 45).save(paths["content"])
    make_texture(64, 64, seed=1).save(paths["a"])
    make_texture(64, 64, seed=2).save(paths["b"])
    return paths


def test_stylize_writes_the_fused_image_at_the_content_size(files, tmp_path, offline, capsys):
    out = tmp_path / "out" / "fused.png"
    argv = ["stylize", str(files["content"]), str(files["a"]), str(files["b"]), "--weights", "0.7", "0.3", "--alpha", "0.8",
            "--preserve-color", "--model", str(files["model"]), "-o", str(out)]
    assert cli.main(argv) == 0
    assert f"wrote {out} (70x45)" in capsys.readouterr().out
    expected = HybridStyle.from_pretrained(files["model"]).stylize(
        files["content"], [files["a"], files["b"]], weights=[0.7, 0.3], alpha=0.8, preserve_color=True
    )
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--weights", "1", "2", "3"], "got 3 weights for 2 styles"),
        (["--alpha", "1.5"], "alpha must be in [0, 1]"),
        (["--device", "no-such-device"], "hybridstyle: error:"),
    ],
)
def test_bad_arguments_exit_2_with_a_message_not_a_traceback(files, tmp_path, offline, capsys, extra, message):
    argv = ["stylize", str(files["content"]), str(files["a"]), str(files["b"]), "--model", str(files["model"]),
            "-o", str(tmp_path / "x.png"), *extra]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "x.png").exists()


def test_unreadable_content_names_the_file(files, tmp_path, offline, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert cli.main(["stylize", str(broken), str(files["a"]), "--model", str(files["model"])]) == 2
    assert "content" in capsys.readouterr().err


def test_help_is_fast_and_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "hybridstyle.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and "stylize" in result.stdout and "init-model" in result.stdout
