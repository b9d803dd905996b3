"""The `hybridstyle` command: what a user types in a shell, run in-process through ``cli.main``."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
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


def test_one_style_with_a_mask_keeps_the_photo_outside_it(files, tmp_path, offline):
    mask = np.zeros((45, 70), np.uint8)
    mask[:, :35] = 255
    Image.fromarray(mask).save(tmp_path / "half.png")
    out, plain = tmp_path / "masked.png", tmp_path / "plain.png"
    common = [str(files["content"]), str(files["a"]), "--model", str(files["model"])]
    assert cli.main(["stylize", *common, "--masks", str(tmp_path / "half.png"), "-o", str(out)]) == 0
    assert cli.main(["stylize", *common, "-o", str(plain)]) == 0
    masked, plain = (np.asarray(Image.open(p), dtype=int) for p in (out, plain))
    photo = np.asarray(Image.open(files["content"]).convert("RGB"), dtype=int)
    assert np.array_equal(masked[:, 40:], photo[:, 40:])
    assert np.abs(masked[:, :30] - plain[:, :30]).max() <= 1 and np.abs(plain - photo).mean() > 5


@pytest.fixture
def responsive_model(tmp_path: Path) -> Path:
    """A saved tiny model whose output depends on its options (He init; see conftest.he_initialized)."""
    from conftest import TINY_CONFIG, he_initialized

    folder = tmp_path / "responsive"
    he_initialized(HybridStyle(**TINY_CONFIG)).save_pretrained(folder)
    return folder


@pytest.mark.parametrize(
    ("flags", "options"),
    [
        (["--masks", "{left}", "{right}"], {"masks": ["{left}", "{right}"]}),
        (["--tile", "32"], {"tile": 32}),
        (["--style-scale", "2"], {"style_scale": 2.0}),
        (["--method", "wct"], {"method": "wct"}),
        (["--dtype", "bfloat16"], {"dtype": torch.bfloat16}),
    ],
    ids=["masks", "tile", "style-scale", "method", "dtype-bfloat16"],
)
def test_stylize_options_reach_the_model(files, responsive_model, tmp_path, offline, capsys, flags, options):
    """Each README flag gives exactly what the Python API gives with that option, which differs from the default."""
    left = np.zeros((45, 70), np.uint8)
    left[:, :35] = 255
    masks = {"{left}": tmp_path / "left.png", "{right}": tmp_path / "right.png"}
    Image.fromarray(left).save(masks["{left}"])
    Image.fromarray(255 - left).save(masks["{right}"])
    flags = [str(masks.get(f, f)) for f in flags]
    out = tmp_path / "out.png"
    argv = ["stylize", str(files["content"]), str(files["a"]), str(files["b"]), "--model", str(responsive_model),
            "-o", str(out), *flags]
    assert cli.main(argv) == 0, capsys.readouterr().err
    options = {k: [masks[m] for m in v] if k == "masks" else v for k, v in options.items()}
    dtype = options.pop("dtype", torch.float32)
    model = HybridStyle.from_pretrained(responsive_model, torch_dtype=dtype)
    styles = [files["a"], files["b"]]
    expected = np.asarray(model.stylize(files["content"], styles, **options))
    got = np.asarray(Image.open(out))
    assert got.shape == (45, 70, 3)
    np.testing.assert_array_equal(got, expected)
    default = np.asarray(HybridStyle.from_pretrained(responsive_model).stylize(files["content"], styles), dtype=np.float64)
    assert np.abs(got - default).max() > 2  # the flag changed the result


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


@pytest.mark.parametrize("change", [{"_class_name": ["HybridStyle"]}, {"block_out_channels": [4, 8, 16, 65536]}])
def test_a_hostile_model_config_is_an_error_message_not_a_traceback(files, tmp_path, offline, capsys, change):
    import json

    config_path = files["model"] / "config.json"
    config_path.write_text(json.dumps({**json.loads(config_path.read_text()), **change}))
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "-o", str(tmp_path / "x.png")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "config.json: " in err and ("_class_name" in err or "block_out_channels" in err) and "Traceback" not in err


def test_unreadable_content_names_the_file(files, tmp_path, offline, capsys):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    assert cli.main(["stylize", str(broken), str(files["a"]), "--model", str(files["model"])]) == 2
    assert "content" in capsys.readouterr().err


def test_help_is_fast_and_lists_the_commands():
    result = subprocess.run([sys.executable, "-m", "hybridstyle.cli", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0
    assert all(command in result.stdout for command in ("stylize", "export-onnx", "init-model"))


# ---- issue 10: errors before any model work, in the CLI's own words -------------------------------------------------


@pytest.fixture
def no_model_work(monkeypatch):
    """Fail the test if the model is loaded: these errors must come before any model work."""

    def refuse(*args, **kwargs):
        pytest.fail("the model was loaded before the arguments were checked")

    monkeypatch.setattr(HybridStyle, "from_pretrained", refuse)


@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_unavailable_cuda_device_says_what_to_pass(files, tmp_path, offline, no_model_work, capsys, device):
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "--device", device,
            "-o", str(tmp_path / "x.png")]
    assert cli.main(argv) == 2  # was a raw AssertionError ("Torch not compiled with CUDA enabled")
    err = capsys.readouterr().err
    assert "CUDA is not available" in err and "devices here: cpu" in err and "--device cpu" in err
    assert not (tmp_path / "x.png").exists()


def test_float16_on_cpu_is_refused_with_the_fast_alternatives(files, tmp_path, offline, no_model_work, capsys):
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "--dtype", "float16",
            "-o", str(tmp_path / "x.png")]
    assert cli.main(argv) == 2  # was accepted, then ran for over 11 minutes on a real model
    err = capsys.readouterr().err
    assert "float16" in err and "--dtype bfloat16" in err and "--dtype float32" in err


def test_too_large_content_names_the_flag_not_the_python_argument(files, tmp_path, offline, capsys):
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "--max-size", "64",
            "-o", str(tmp_path / "x.png")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "pass --max-size 70" in err and "max_size=" not in err


@pytest.mark.parametrize(("output", "message"), [
    ("outnoext", "end it in .png"),
    ("out.notaformat", "end it in .png"),
    ("a_file.txt/out.png", "is a file, not a folder"),
    ("a_folder", "is a folder"),
])
def test_bad_output_path_fails_before_the_model_loads(files, tmp_path, offline, no_model_work, capsys, output, message):
    (tmp_path / "a_file.txt").write_text("x")
    (tmp_path / "a_folder").mkdir()
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "-o", str(tmp_path / output)]
    assert cli.main(argv) == 2  # "-o outnoext" used to fail only after stylizing
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


# ---- issue 9: batches -------------------------------------------------------------------------------------------------


@pytest.fixture
def batch(tmp_path: Path, files) -> dict[str, Path]:
    """photos/ (2 images, plus a text file and a hidden file that are not inputs), more/c.jpg, styles/ (2 styles)."""
    photos, more, styles = tmp_path / "photos", tmp_path / "more", tmp_path / "styles"
    for folder in (photos, more, styles):
        folder.mkdir()
    make_image(40, 32, seed=1).save(photos / "p1.jpg")
    make_image(48, 40, seed=2).save(photos / "p2.png")
    (photos / "notes.txt").write_text("not an image")
    (photos / "._p1.jpg").write_bytes(b"macOS resource fork, not an image")
    make_image(36, 36, seed=3).save(more / "c.jpg")
    make_texture(32, 32, seed=4).save(styles / "s1.png")
    make_texture(32, 32, seed=5).save(styles / "s2.jpg")
    return {"photos": photos, "more": more, "styles": styles, "out": tmp_path / "out", "model": files["model"]}


def _batch_argv(batch, *extra) -> list[str]:
    return ["stylize", str(batch["photos"]), str(batch["more"] / "*.jpg"), "--style", str(batch["styles"]),
            "--model", str(batch["model"]), "--out-dir", str(batch["out"]), *extra]


def test_batch_expands_folders_and_globs_into_every_content_style_pair(batch, offline, capsys, monkeypatch):
    loads = []
    original = HybridStyle.from_pretrained

    def counting_load(*args, **kwargs):
        loads.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(HybridStyle, "from_pretrained", counting_load)
    assert cli.main(_batch_argv(batch)) == 0
    names = sorted(p.name for p in batch["out"].iterdir())
    assert names == [f"{c}__{s}.png" for c in ("c", "p1", "p2") for s in ("s1", "s2")]  # 3 contents x 2 styles
    assert Image.open(batch["out"] / "p2__s1.png").size == (48, 40)  # each output at its content's size
    assert len(loads) == 1, "the model must be loaded once for the whole batch"
    assert "wrote 6 images" in capsys.readouterr().out


def test_batch_fuse_makes_one_image_per_content_equal_to_stylize(batch, offline, capsys):
    assert cli.main(_batch_argv(batch, "--weights", "0.7", "0.3")) == 0  # --weights imply --fuse
    assert sorted(p.name for p in batch["out"].iterdir()) == ["c__s1+s2.png", "p1__s1+s2.png", "p2__s1+s2.png"]
    expected = HybridStyle.from_pretrained(batch["model"]).stylize(
        batch["photos"] / "p1.jpg", [batch["styles"] / "s1.png", batch["styles"] / "s2.jpg"], weights=[0.7, 0.3])
    assert np.array_equal(np.asarray(Image.open(batch["out"] / "p1__s1+s2.png")), np.asarray(expected))


def test_batch_skips_unreadable_images_with_a_warning_and_a_count(batch, offline, capsys):
    (batch["photos"] / "broken.jpg").write_bytes(b"not a jpeg")
    (batch["styles"] / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    assert cli.main(_batch_argv(batch)) == 0  # something succeeded
    captured = capsys.readouterr()
    assert "warning: skipping 4 outputs: style: " in captured.err  # 4 contents
    assert "warning: skipping 2 outputs: content: " in captured.err and "broken.jpg" in captured.err  # 3 styles - broken.png
    assert captured.err.count("broken.png") == 1, "a bad style is reported once, not once per content"
    # 4 contents x 3 styles = 12 outputs; broken.jpg costs 3, broken.png costs 4 (one already counted): 6 skipped.
    assert "wrote 6 images" in captured.out
    assert "skipped 6 outputs whose inputs could not be used (1 content file and 1 style file;" in captured.out
    assert len(list(batch["out"].iterdir())) == 6


def test_batch_where_nothing_succeeds_exits_nonzero(batch, tmp_path, offline, no_model_work, capsys):
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.jpg").write_bytes(b"not a jpeg")
    (broken / "b.png").write_bytes(b"not a png")
    argv = ["stylize", str(broken), "--style", str(batch["styles"]), "--model", str(batch["model"]),
            "--out-dir", str(batch["out"])]
    assert cli.main(argv) == 2
    assert "nothing was stylized" in capsys.readouterr().err
    assert list(batch["out"].iterdir()) == []


def test_batch_keeps_existing_outputs_unless_overwrite(batch, offline, capsys):
    batch["out"].mkdir()
    kept = batch["out"] / "p1__s1.png"
    kept.write_bytes(b"an earlier result")
    assert cli.main(_batch_argv(batch)) == 0
    assert kept.read_bytes() == b"an earlier result"
    out = capsys.readouterr().out
    assert "wrote 5 images" in out and "kept 1 that already existed (--overwrite replaces them)" in out

    assert cli.main(_batch_argv(batch, "--overwrite")) == 0
    assert Image.open(kept).size == (40, 32)
    assert "wrote 6 images" in capsys.readouterr().out


def test_rerun_with_every_output_present_loads_no_model_and_succeeds(batch, offline, no_model_work, capsys):
    batch["out"].mkdir()
    for c, s in [(c, s) for c in ("c", "p1", "p2") for s in ("s1", "s2")]:
        (batch["out"] / f"{c}__{s}.png").write_bytes(b"done")
    (batch["photos"] / "broken.jpg").write_bytes(b"not a jpeg")  # still unusable, but the batch's work is done
    assert cli.main(_batch_argv(batch)) == 0
    assert "kept 6" in capsys.readouterr().out


def test_crash_while_writing_leaves_no_partial_output(batch, offline, monkeypatch, capsys):
    def save_half(self, fp, format=None, **params):
        fp.write(b"\x89PNG half an image")
        raise OSError("No space left on device")

    monkeypatch.setattr(Image.Image, "save", save_half)
    assert cli.main(_batch_argv(batch)) == 2
    assert "No space left on device" in capsys.readouterr().err
    assert list(batch["out"].iterdir()) == [], "neither a truncated output nor a temporary file may remain"


@pytest.mark.parametrize(("extra", "message"), [
    ([], "pass --out-dir DIR"),
    (["-o", "one.png"], "-o names one file"),
])
def test_several_outputs_need_an_output_folder(batch, offline, no_model_work, capsys, extra, message):
    argv = ["stylize", str(batch["photos"]), "--style", str(batch["styles"]), "--model", str(batch["model"]), *extra]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("inputs", "message"), [
    (["photos/p1.jpg", "photos/missing.jpg"], "no such file or folder"),
    (["photos/*.gif"], "matches no image file"),
    (["photos/p1.jpg", "other/p1.png"], "would both be written to"),
])
def test_batch_input_problems_fail_before_the_model_loads(batch, tmp_path, offline, no_model_work, capsys, inputs, message):
    (tmp_path / "other").mkdir()
    make_image(20, 20).save(tmp_path / "other" / "p1.png")
    argv = ["stylize", *[str(tmp_path / i) for i in inputs], "--style", str(batch["styles"]), "--model",
            str(batch["model"]), "--out-dir", str(batch["out"])]
    assert cli.main(argv) == 2
    assert message in capsys.readouterr().err


def test_batch_skips_a_too_large_content_and_names_the_flag(batch, offline, capsys):
    assert cli.main(_batch_argv(batch, "--max-size", "45")) == 0  # p2 is 48x40
    captured = capsys.readouterr()
    assert "skipping 2 outputs:" in captured.err and "p2.png" in captured.err and "pass --max-size 48" in captured.err
    assert "wrote 4 images" in captured.out
    assert "skipped 2 outputs whose inputs could not be used (1 content file;" in captured.out
    assert not any(p.name.startswith("p2__") for p in batch["out"].iterdir())


# ---- issue 14: --quality, the refinement dial -------------------------------------------------------------------------


def test_quality_refines_the_image_as_the_api_does(files, tmp_path, offline, capsys):
    out = tmp_path / "refined.png"
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "--quality", "1",
            "-o", str(out)]
    assert cli.main(argv) == 0
    assert "refining" in capsys.readouterr().err  # the refinement's progress bar
    model = HybridStyle.from_pretrained(files["model"])
    expected = model.stylize(files["content"], files["a"], quality=1)
    assert np.array_equal(np.asarray(Image.open(out)), np.asarray(expected))
    assert not np.array_equal(np.asarray(expected), np.asarray(model.stylize(files["content"], files["a"])))


@pytest.mark.parametrize("quality", ["ultra", "-2", "1.5", ""])
def test_bad_quality_is_refused_before_the_model_loads(files, tmp_path, offline, no_model_work, capsys, quality):
    argv = ["stylize", str(files["content"]), str(files["a"]), "--model", str(files["model"]), "--quality", quality,
            "-o", str(tmp_path / "x.png")]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert f"--quality {quality!r} is not a quality setting" in err and "fast" in err and "balanced" in err
    assert "Traceback" not in err and not (tmp_path / "x.png").exists()


def test_quality_is_in_the_help():
    assert "--quality LEVEL" in cli._parser()._subparsers._group_actions[0].choices["stylize"].format_help()


def _launch_two_processes(argv: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """``accelerate launch`` of ``python -m hybridstyle argv`` as two gloo (CPU) processes, on a fresh free port."""
    from conftest import REPO_ROOT, free_port

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT), "OMP_NUM_THREADS": "1"}
    for _attempt in range(3):
        # --multi_gpu with no GPU is accelerate's multi-CPU (gloo) launch; its --cpu would start a single process.
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
                  "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
                  "--main_process_port", str(free_port()), "-m", "hybridstyle", *argv]
        result = subprocess.run(launch, capture_output=True, text=True, env=env, cwd=cwd, timeout=600)
        if result.returncode == 0 or "address already in use" not in (result.stdout + result.stderr).lower():
            break  # else the port was taken between free_port() and the bind: again
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def test_accelerate_launch_splits_a_batch_between_two_cpu_processes(batch, tmp_path):
    """``accelerate launch -m hybridstyle stylize``: each output written once, by one of two processes, the same pixels
    as one process paints; a re-run keeps everything."""
    pytest.importorskip("accelerate")
    if torch.cuda.is_available():
        pytest.skip("checks the multi-CPU launch; with a GPU accelerate would start GPU processes")
    result = _launch_two_processes(_batch_argv(batch), tmp_path)
    names = sorted(p.name for p in batch["out"].iterdir())
    assert names == [f"{c}__{s}.png" for c in ("c", "p1", "p2") for s in ("s1", "s2")]  # no stray temporary files
    # Whole contents per process: 3 contents between 2 processes make shares of 2 and 1 contents (4 and 2 images).
    assert "process 1/2: wrote 4 images" in result.stdout and "process 2/2: wrote 2 images" in result.stdout
    model = HybridStyle.from_pretrained(batch["model"])
    expected = model.stylize(batch["more"] / "c.jpg", [batch["styles"] / "s2.jpg"])
    assert np.array_equal(np.asarray(Image.open(batch["out"] / "c__s2.png")), np.asarray(expected))

    again = _launch_two_processes(_batch_argv(batch), tmp_path)
    for process, kept in (("1/2", 4), ("2/2", 2)):
        assert re.search(rf"process {process}: wrote 0 images to \S+; kept {kept} that already existed", again.stdout)


@pytest.mark.parametrize("user_value", [None, "ACTIVE"])
def test_openmp_threads_sleep_unless_the_user_says_otherwise(user_value: str | None) -> None:
    # Asked of OpenMP itself (OMP_DISPLAY_ENV makes libgomp print what it read when torch loads it): spin-waiting
    # threads slowed a stylization 20x on a busy CPU, and os.environ alone would not prove torch saw the value.
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    env.update(OMP_DISPLAY_ENV="TRUE", PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    if user_value:
        env["OMP_WAIT_POLICY"] = user_value
    code = "import hybridstyle.cli, torch; torch.ones(8, 8) @ torch.ones(8, 8)"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"OMP_WAIT_POLICY = '{user_value or 'PASSIVE'}'" in result.stderr
