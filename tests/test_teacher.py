"""Distillation: scripts/make_teacher_set.py writes refined pairs, TeacherPairs reads them, train.py learns from them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import load_script, make_image, make_texture
from PIL import Image
from test_train import read_losses, run

from hybridstyle import HybridStyleFast
from hybridstyle.data import TeacherPairs

make_teacher_set = load_script("make_teacher_set")
train = load_script("train")
TINY_FAST = {"block_out_channels": [4, 8, 16], "encoder_bottleneck_layers": 1, "decoder_bottleneck_layers": 1}


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    root = tmp_path_factory.mktemp("teacher_sources")
    for folder, maker in (("content", make_image), ("style", make_texture)):
        (root / folder).mkdir()
        for i in range(3):
            maker(48 + 8 * i, 40, seed=i).save(root / folder / f"{i}.png")
    torch.manual_seed(0)
    HybridStyleFast.from_config(TINY_FAST).save_pretrained(root / "model")
    return root


def write_set(sources: Path, out: Path, *extra: str, pairs: int = 3) -> None:
    make_teacher_set.main(["--content_dir", str(sources / "content"), "--style_dir", str(sources / "style"),
                           "--out", str(out), "--model", str(sources / "model"), "--num_pairs", str(pairs),
                           "--resolution", "32", "--quality", "2", *extra])


def test_teacher_set_is_the_refined_pairs_and_shards_write_the_same_set(sources, tmp_path):
    write_set(sources, tmp_path / "whole")
    files = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert files == [f"0000{i}{suffix}" for i in range(3) for suffix in (".json", "_content.png", "_style.png", "_target.png")]
    record = json.loads((tmp_path / "whole" / "00001.json").read_text())
    assert Path(record["content_source"]).parent.name == "content" and record["quality"] == 2
    # The target is the model's refined output of the written content and style crops, nothing else.
    from hybridstyle import HybridStyle

    model = HybridStyle.from_pretrained(sources / "model").eval()
    content, style, target = (Image.open(tmp_path / "whole" / f"00001_{n}.png") for n in ("content", "style", "target"))
    assert content.size == style.size == target.size == (32, 32)
    again = np.asarray(model.stylize(content, style, quality=2), dtype=np.int16)
    assert np.abs(again - np.asarray(target, dtype=np.int16)).max() <= 1
    feed_forward = np.asarray(model.stylize(content, style), dtype=np.int16)
    assert np.abs(feed_forward - np.asarray(target, dtype=np.int16)).mean() > 5  # the refinement changed it

    # Two shards write exactly the pairs one process writes; a rerun skips what is there.
    for shard in ("0/2", "1/2"):
        write_set(sources, tmp_path / "sharded", "--shard", shard)
    for name in files:
        assert (tmp_path / "whole" / name).read_bytes() == (tmp_path / "sharded" / name).read_bytes(), name
    stamp = (tmp_path / "sharded" / "00000_target.png").stat().st_mtime_ns
    write_set(sources, tmp_path / "sharded", pairs=4)
    assert (tmp_path / "sharded" / "00000_target.png").stat().st_mtime_ns == stamp
    assert (tmp_path / "sharded" / "00003.json").is_file()
    with pytest.raises(SystemExit, match="K/N"):
        write_set(sources, tmp_path / "bad", "--shard", "half")


def write_pair(folder: Path, stem: str, size: tuple[int, int] = (16, 16), complete: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(int(stem))
    for name in TeacherPairs.NAMES:
        Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(folder / f"{stem}_{name}.png")
    if complete:
        (folder / f"{stem}.json").write_text("{}")


def test_teacher_pairs_lists_complete_pairs_and_mirrors_content_with_its_target(tmp_path):
    write_pair(tmp_path, "00000")
    write_pair(tmp_path, "00001", complete=False)  # still being written: no .json yet
    pairs = TeacherPairs(tmp_path, min_length=4)
    assert pairs.stems == ["00000"] and len(pairs) == 4
    plain = [torch.from_numpy(np.asarray(Image.open(tmp_path / f"00000_{n}.png"))).permute(2, 0, 1) / 255
             for n in TeacherPairs.NAMES]
    seen = set()
    for seed in range(20):
        content, style, target = pairs[(0, seed)]
        assert torch.allclose(style, plain[1], atol=1e-6)
        mirrored = not torch.allclose(content, plain[0], atol=1e-6)
        assert torch.allclose(content, plain[0].flip(-1) if mirrored else plain[0], atol=1e-6)
        assert torch.allclose(target, plain[2].flip(-1) if mirrored else plain[2], atol=1e-6)
        seen.add(mirrored)
    assert seen == {True, False}

    write_pair(tmp_path / "odd", "00000", size=(16, 24))
    (tmp_path / "odd" / "00000_style.png").unlink()
    Image.new("RGB", (16, 16)).save(tmp_path / "odd" / "00000_style.png")
    with pytest.raises(ValueError, match="must have one size; rewrite it"):
        TeacherPairs(tmp_path / "odd")[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no complete teacher pairs.*make_teacher_set.py"):
        TeacherPairs(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="make_teacher_set.py"):
        TeacherPairs(tmp_path / "missing")


def test_training_on_a_teacher_set_learns_the_teachers_image(tmp_path):
    """With only the teacher losses on, one pair whose teacher image is the content's negative (a mapping a new model
    is far from, and can learn): the L1 distance to the teacher's image must fall."""
    content = make_image(32, 32, seed=3)
    for name, image in (("content", content), ("style", content), ("target", Image.eval(content, lambda v: 255 - v))):
        (tmp_path / "set").mkdir(exist_ok=True)
        image.save(tmp_path / "set" / f"00000_{name}.png")
    (tmp_path / "set" / "00000.json").write_text("{}")
    out = tmp_path / "out"
    config = tmp_path / "fast.json"
    config.write_text(json.dumps(TINY_FAST))
    run(["--teacher_dir", str(tmp_path / "set"), "--model_config", str(config), "--output_dir", str(out),
         "--train_batch_size", "1", "--max_train_steps", "30", "--checkpointing_steps", "1000", "--validation_steps",
         "1000", "--num_validation_pairs", "1", "--report_to", "none", "--seed", "0", "--learning_rate", "1e-2",
         "--lr_warmup_steps", "0", "--adv_weight", "0", "--content_weight", "0", "--style_weight", "0",
         "--teacher_weight", "10", "--teacher_feature_weight", "1"])
    records = read_losses(out)
    assert len(records) == 30 and all({"teacher", "teacher_feat"} <= set(r) for r in records)
    teacher = [r["teacher"] for r in records]
    assert max(teacher[-5:]) < 0.6 * teacher[0], teacher
    assert records[0]["g_loss"] == pytest.approx(10 * records[0]["teacher"] + records[0]["teacher_feat"], rel=1e-4)


def test_teacher_dir_replaces_the_image_folders():
    with pytest.raises(SystemExit):
        train.parse_args(["--teacher_dir", "t", "--content_dir", "a", "--style_dir", "b"])
    assert train.parse_args(["--teacher_dir", "t"]).teacher_dir == "t"
    with pytest.raises(SystemExit):
        train.parse_args(["--style_dir", "b"])


def test_teacher_as_real_shows_the_discriminator_the_teachers_images(tmp_path, monkeypatch):
    from hybridstyle.discriminator import MultiScaleDiscriminator

    content = make_image(32, 32, seed=3)
    teacher_image = Image.eval(content, lambda v: 255 - v)
    (tmp_path / "set").mkdir()
    for name, image in (("content", content), ("style", make_texture(32, 32, seed=4)), ("target", teacher_image)):
        image.save(tmp_path / "set" / f"00000_{name}.png")
    (tmp_path / "set" / "00000.json").write_text("{}")
    config = tmp_path / "fast.json"
    config.write_text(json.dumps(TINY_FAST))
    seen = []
    forward = MultiScaleDiscriminator.forward

    def recording(self, images):
        seen.append(images.detach().clone())
        return forward(self, images)

    monkeypatch.setattr(MultiScaleDiscriminator, "forward", recording)
    teacher = torch.from_numpy(np.asarray(teacher_image)).permute(2, 0, 1).float() / 255
    style = torch.from_numpy(np.asarray(Image.open(tmp_path / "set" / "00000_style.png"))).permute(2, 0, 1).float() / 255

    def shown(*extra: str) -> tuple[bool, bool]:
        seen.clear()
        run(["--teacher_dir", str(tmp_path / "set"), "--model_config", str(config), "--output_dir", str(tmp_path / "o"),
             "--train_batch_size", "1", "--max_train_steps", "1", "--checkpointing_steps", "1000", "--validation_steps",
             "1000", "--num_validation_pairs", "1", "--report_to", "none", "--seed", "0", "--adv_weight", "0.1", *extra])
        shutil.rmtree(tmp_path / "o")
        # The teacher's image may come mirrored (mirrored with its content); the style never is.
        as_teacher = any(torch.allclose(x[0], t, atol=1e-6) for x in seen for t in (teacher, teacher.flip(-1)))
        return as_teacher, any(torch.allclose(x[0], style, atol=1e-6) for x in seen)

    assert shown("--teacher_as_real") == (True, False)
    assert shown() == (False, True)
    with pytest.raises(SystemExit):
        train.parse_args(["--content_dir", "a", "--style_dir", "b", "--teacher_as_real"])
