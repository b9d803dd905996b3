"""scripts/train.py end to end on a tiny model: losses, checkpoints, resume, signals, 2 processes, Hub upload."""

from __future__ import annotations

import copy
import json
import logging
import math
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import free_port, load_script, make_image, make_texture
from PIL import Image

from hybridstyle import HybridStyle, HybridStyleFast

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "train.py"
TINY = {"block_out_channels": [4, 8, 16, 32], "layers_per_block": [1, 1, 1, 1]}
train = load_script("train")


def write_textures(folder: Path, count: int, seed: int, size: int = 80) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for i in range(count):
        small = rng.integers(0, 256, (size // 8, size // 8, 3), dtype=np.uint8)
        Image.fromarray(small).resize((size, size), Image.BICUBIC).save(folder / f"{i}.png")
    return folder


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_data")
    config = root / "tiny.json"
    config.write_text(json.dumps(TINY))
    return {"content": write_textures(root / "content", 8, 0), "style": write_textures(root / "style", 8, 1), "config": config}


def base_args(data, output_dir: Path, *extra: str, steps: int = 2) -> list[str]:
    return [
        "--content_dir", str(data["content"]), "--style_dir", str(data["style"]), "--model_config", str(data["config"]),
        "--output_dir", str(output_dir), "--resolution", "64", "--train_batch_size", "2", "--max_train_steps", str(steps),
        "--checkpointing_steps", "1000", "--validation_steps", "1000", "--validation_resolution", "64",
        "--num_validation_pairs", "2", "--report_to", "none", "--seed", "0", "--learning_rate", "1e-3",
        "--lr_warmup_steps", "0", "--architecture", "base", *extra,
    ]


def run(argv: list[str]) -> None:
    """train.main in this process; accelerate's process-wide state is reset so each run starts fresh."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    train.main(argv)


def read_losses(output_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (output_dir / "losses.jsonl").read_text().splitlines()]


def checkpoint_steps(output_dir: Path) -> list[int]:
    return [int(p.name.split("-")[1]) for p in train.list_checkpoints(str(output_dir))]


def subprocess_env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}


def wait_for(condition, timeout: float, what: str, process: subprocess.Popen | None = None, poll: float = 0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        if process is not None and process.poll() is not None:
            raise AssertionError(f"training exited with {process.returncode} before {what}")
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def test_training_steps_change_weights_and_write_everything(data, tmp_path, caplog):
    init = tmp_path / "init"
    torch.manual_seed(0)  # the starting model must not depend on which tests ran before
    HybridStyle(**TINY).save_pretrained(init)
    out = tmp_path / "out"
    caplog.set_level(logging.INFO)
    run(base_args(data, out, "--init_from", str(init), "--use_ema", "--report_to", "tensorboard", "--validation_steps", "2",
                  "--adv_start_step", "1", "--save_dtype", "fp32", steps=4))

    records = read_losses(out)
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    assert all(math.isfinite(v) for r in records for v in r.values())
    assert "g_adv" not in records[0] and "d_loss" in records[1]  # --adv_start_step 1 switches the GAN on after step 1
    if not torch.cuda.is_available():
        assert "on cpu" in caplog.text  # no accelerator: the CPU without --cpu

    trained, start = HybridStyle.from_pretrained(out), HybridStyle.from_pretrained(init)
    changed = [not torch.equal(a, b) for a, b in zip(trained.decoder.parameters(), start.decoder.parameters())]
    assert all(changed)
    for a, b in zip(trained.encoder.parameters(), start.encoder.parameters()):
        assert torch.equal(a, b)  # the VGG encoder is frozen
    assert trained.stylize(Image.new("RGB", (48, 40), "red"), Image.new("RGB", (32, 32), "blue")).size == (48, 40)
    card = (out / "README.md").read_text()
    assert "trained with `scripts/train.py` for 4 steps" in card and "--use_ema" in card

    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    with Image.open(out / "validation" / "step-0000004.png") as grid:
        assert grid.size == (3 * 64, 2 * 64)  # content | style | output, one row per pair
    events = list((out / "logs").rglob("events.out.tfevents.*"))
    assert events
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    scalars = set()
    for event_file in events:
        accumulator = EventAccumulator(str(event_file))
        accumulator.Reload()
        scalars |= set(accumulator.Tags()["scalars"]) | set(accumulator.Tags()["images"])
    assert {"content", "style", "g_loss", "d_loss", "lr", "validation"} <= scalars


def test_fast_architecture_trains_the_whole_light_model_with_the_vgg_loss(data, tmp_path):
    out = tmp_path / "fast"
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"block_out_channels": [4, 8, 16], "encoder_bottleneck_layers": 1,
                                  "decoder_bottleneck_layers": 1}))
    # A new model of --model_config trains: its class, config and loss network come from the flags.
    run(base_args(data, out, "--architecture", "fast", "--model_config", str(config), "--identity_weight", "5",
                  "--use_ema", "--seed", "0", steps=3))
    trained = HybridStyle.from_pretrained(out)
    assert type(trained) is HybridStyleFast and list(trained.config.block_out_channels) == [4, 8, 16]
    # Encoder and decoder are both the generator: both learn (VGG19 is only the loss network and is not saved).
    # Compared with the exact starting weights (--init_from), and every parameter: a frozen part stays equal.
    torch.manual_seed(0)
    start = HybridStyleFast.from_config(json.loads(config.read_text()))
    start.save_pretrained(tmp_path / "start")
    out = tmp_path / "fast_from_start"
    run(base_args(data, out, "--init_from", str(tmp_path / "start"), "--identity_weight", "5", "--save_dtype", "fp32",
                  "--resolution", "32", "--validation_resolution", "32", steps=3))
    trained = HybridStyle.from_pretrained(out)
    before = dict(start.named_parameters())
    for part in ("encoder", "decoder"):
        unchanged = [n for n, p in getattr(trained, part).named_parameters() if torch.equal(p, before[f"{part}.{n}"])]
        assert not unchanged, (part, unchanged)
    records = read_losses(out)
    assert [r["step"] for r in records] == [1, 2, 3] and all("identity" in r for r in records)


def test_grow_decoder_starts_from_exactly_the_same_model_and_refuses_others():
    from conftest import he_initialized

    small = he_initialized(HybridStyleFast(block_out_channels=(4, 8, 16), decoder_layers_per_level=1)).eval()
    grown = train.grow_decoder(small, 2).eval()
    assert grown.config.decoder_layers_per_level == 2
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in small.parameters())
    content, style = torch.rand(1, 3, 48, 64), torch.rand(1, 3, 40, 40)
    with torch.no_grad():
        torch.testing.assert_close(grown(content, style).images, small(content, style).images)
    with pytest.raises(ValueError, match="only grows"):
        train.grow_decoder(grown, 1)
    with pytest.raises(ValueError, match="needs a HybridStyleFast"):
        train.grow_decoder(HybridStyle(**TINY), 2)


def test_grid_weight_adds_the_grid_loss_to_the_generator(data, tmp_path):
    run(base_args(data, tmp_path / "plain", steps=2))
    run(base_args(data, tmp_path / "grid", "--grid_weight", "100", steps=2))
    plain, gridded = read_losses(tmp_path / "plain"), read_losses(tmp_path / "grid")
    assert all("grid" not in row for row in plain)
    for a, b in zip(plain, gridded, strict=True):
        assert b["grid"] >= 0 and math.isfinite(b["grid"])
        # Same seed, same batches: the first step's generator loss differs by exactly the weighted grid term.
        if a["step"] == 1:
            assert b["grid"] > 0  # a random decoder's nearest upsampling leaves a grid
            assert math.isclose(b["g_loss"], a["g_loss"] + 100 * b["grid"], rel_tol=1e-4, abs_tol=1e-5)


def test_upsample_mode_keeps_the_weights_changes_the_decoder_and_trains(data, tmp_path):
    from conftest import he_initialized

    nearest = he_initialized(HybridStyle(**TINY)).eval()
    bilinear = train.reconfigure_base_decoder(nearest, upsample_mode="bilinear").eval()
    assert bilinear.config.upsample_mode == "bilinear" and nearest.config.upsample_mode == "nearest"
    for key, value in nearest.state_dict().items():
        assert torch.equal(bilinear.state_dict()[key], value)
    content, style = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        out_nearest, out_bilinear = nearest(content, style).images, bilinear(content, style).images
    # Nearest repeats each decoded pixel 2x2 before the last conv; bilinear makes neighbours differ smoothly.
    assert (out_nearest - out_bilinear).abs().mean() > 1e-3
    with pytest.raises(ValueError, match="--upsample_mode: for the base architecture only"):
        train.reconfigure_base_decoder(HybridStyleFast(block_out_channels=(4, 8, 16)), upsample_mode="bilinear")
    with pytest.raises(ValueError, match="upsample_mode must be one of nearest, bilinear, bilinear_finest, got 'bicubic'"):
        HybridStyle(**TINY, upsample_mode="bicubic")

    def upsampling(model: HybridStyle) -> list[str]:
        return [m.mode for m in model.decoder.modules() if isinstance(m, torch.nn.Upsample)]

    # Coarsest first: only the last (finest) step changes with bilinear_finest, where nearest's visible 2-px grid is.
    assert upsampling(nearest) == ["nearest"] * 3 and upsampling(bilinear) == ["bilinear"] * 3
    finest = train.reconfigure_base_decoder(nearest, upsample_mode="bilinear_finest")
    assert upsampling(finest) == ["nearest", "nearest", "bilinear"]

    start = tmp_path / "start"
    nearest.save_pretrained(start)
    run(base_args(data, tmp_path / "run", "--init_from", str(start), "--upsample_mode", "bilinear"))
    trained = HybridStyle.from_pretrained(tmp_path / "run")
    assert trained.config.upsample_mode == "bilinear"
    assert any(isinstance(m, torch.nn.Upsample) and m.mode == "bilinear" for m in trained.decoder.modules())


def test_noise_levels_keep_the_weights_start_silent_and_train(data, tmp_path):
    from conftest import he_initialized

    plain = he_initialized(HybridStyle(**TINY)).eval()
    noisy = train.reconfigure_base_decoder(plain, noise_levels=2).eval()
    assert noisy.config.noise_levels == 2 and len(noisy.decoder.noise) == 2
    for key, value in plain.state_dict().items():
        assert torch.equal(noisy.state_dict()[key], value)
    content, style = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(noisy(content, style).images, plain(content, style).images)
    with pytest.raises(ValueError, match="--noise_levels: for the base architecture only"):
        train.reconfigure_base_decoder(HybridStyleFast(block_out_channels=(4, 8, 16)), noise_levels=1)

    start = tmp_path / "start"
    plain.save_pretrained(start)
    run(base_args(data, tmp_path / "run", "--init_from", str(start), "--noise_levels", "1", steps=3))
    trained = HybridStyle.from_pretrained(tmp_path / "run")
    assert trained.config.noise_levels == 1
    # The noise scales are trained with the decoder (they start at 0; the generator's optimizer moves them).
    assert trained.decoder.noise[0].scale.abs().max() > 0


def test_changing_noise_levels_keeps_each_trained_scale_at_its_level_and_refuses_to_drop_one():
    from conftest import he_initialized

    one = he_initialized(HybridStyle(**TINY, noise_levels=1)).eval()
    torch.nn.init.uniform_(one.decoder.noise[0].scale, 0.1, 0.2)  # a trained finest-level noise input
    two = train.reconfigure_base_decoder(one, noise_levels=2)
    # Indexed coarsest first: the finest level's scale is now noise[1]; the new coarser one starts silent.
    assert torch.equal(two.decoder.noise[1].scale, one.decoder.noise[0].scale)
    assert two.decoder.noise[0].seed == 2 and not two.decoder.noise[0].scale.any()
    content, style = torch.rand(1, 3, 64, 64), torch.rand(1, 3, 48, 48)
    with torch.no_grad():
        assert torch.equal(two.eval()(content, style).images, one(content, style).images)
    back = train.reconfigure_base_decoder(two, noise_levels=1)  # the coarser scale is still 0: nothing is lost
    assert torch.equal(back.decoder.noise[0].scale, one.decoder.noise[0].scale)
    with pytest.raises(ValueError, match=r"noise input at decoder block 1 is trained .* keep --noise_levels at 1 or more"):
        train.reconfigure_base_decoder(one, noise_levels=0)


def test_final_model_is_fp16_readable_by_others_with_a_last_validation_grid(data, tmp_path):
    # What a user of the README's fine-tune one-liner gets: a short run (fewer steps than --validation_steps).
    out = tmp_path / "out"
    run(base_args(data, out, steps=3))
    weights = out / "diffusion_pytorch_model.safetensors"
    assert oct(weights.stat().st_mode & 0o777) == "0o644"
    from safetensors import safe_open

    with safe_open(weights, framework="pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} == {torch.float16}
    assert HybridStyle.from_pretrained(out).dtype == torch.float32
    assert [p.name for p in (out / "validation").iterdir()] == ["step-0000003.png"]


def test_checkpoint_pruning_keeps_newest_and_clears_partial_saves(data, tmp_path):
    out = tmp_path / "out"
    (out / "checkpoint-99.tmp").mkdir(parents=True)  # left by a run killed while saving
    run(base_args(data, out, "--checkpointing_steps", "1", "--checkpoints_total_limit", "2", steps=4))
    assert checkpoint_steps(out) == [3, 4]
    assert not list(out.glob("*.tmp"))
    checkpoint = out / "checkpoint-4"
    saved = json.loads((checkpoint / "step.json").read_text())
    assert saved["elapsed"] > 0 and {k: v for k, v in saved.items() if k != "elapsed"} == {"step": 4, "batches": 4,
                                                                                           "data_seed": 0}
    assert HybridStyle.from_pretrained(checkpoint / "model").config.block_out_channels == TINY["block_out_channels"]
    assert (checkpoint / "discriminator_0" / "config.json").is_file()


def test_resume_restores_step_optimizers_schedulers_ema_and_rng(data, tmp_path, monkeypatch):
    first = tmp_path / "first"
    run(base_args(data, first, "--use_ema", "--checkpointing_steps", "2", steps=4))
    second = tmp_path / "second"
    second.mkdir()
    shutil.copytree(first / "checkpoint-2", second / "checkpoint-2")

    restored = {}
    original_load_state = train.Accelerator.load_state

    def recording_load_state(self, input_dir=None, **kwargs):
        result = original_load_state(self, input_dir, **kwargs)
        restored["optimizers"] = [copy.deepcopy(o.state_dict()) for o in self._optimizers]
        restored["schedulers"] = [s.state_dict() for s in self._schedulers]
        restored["ema"] = copy.deepcopy(self._custom_objects[0].state_dict())
        restored["random"] = random.getstate()
        restored["models"] = [copy.deepcopy(m.state_dict()) for m in self._models]
        return result

    monkeypatch.setattr(train.Accelerator, "load_state", recording_load_state)
    run(base_args(data, second, "--use_ema", "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest", steps=4))

    checkpoint = first / "checkpoint-2"
    for i, name in enumerate(["optimizer.bin", "optimizer_1.bin"]):
        saved = torch.load(checkpoint / name, weights_only=False)
        state = restored["optimizers"][i]["state"]
        assert state.keys() == saved["state"].keys() and state
        for key, tensors in saved["state"].items():
            for field in ("step", "exp_avg", "exp_avg_sq"):
                assert torch.equal(state[key][field], tensors[field]), (name, key, field)
    assert [s["last_epoch"] for s in restored["schedulers"]] == [2, 2]
    saved_ema = torch.load(checkpoint / "custom_checkpoint_0.pkl", weights_only=False)
    assert restored["ema"]["optimization_step"] == saved_ema["optimization_step"] == 2
    for a, b in zip(restored["ema"]["shadow_params"], saved_ema["shadow_params"]):
        assert torch.equal(a, b)
    assert restored["random"] == torch.load(checkpoint / "random_states_0.pkl", weights_only=False)["random_state"]
    from safetensors.torch import load_file

    for key, value in load_file(checkpoint / "model.safetensors").items():
        assert torch.equal(restored["models"][0][key], value)

    # Training went on from step 3, and the optimizers kept counting from the restored state.
    assert [r["step"] for r in read_losses(second)] == [3, 4]
    final = torch.load(second / "checkpoint-4" / "optimizer.bin", weights_only=False)
    assert {float(s["step"]) for s in final["state"].values()} == {4.0}


def test_the_data_stream_resumes_at_any_position_without_touching_the_global_rngs():
    from itertools import islice

    from accelerate import Accelerator
    from accelerate.state import AcceleratorState, GradientState
    from torch.utils.data import DataLoader, Dataset

    class Keys(Dataset):  # returns what the sampler asked for: (index, crop seed)
        def __len__(self):
            return 5

        def __getitem__(self, key):
            return torch.tensor(key)

    AcceleratorState._reset_state(reset_partial_state=True)
    GradientState._reset_state()
    accelerator = Accelerator(cpu=True)

    def stream(batches_seen: int, count: int) -> list[list[tuple[int, int]]]:
        sampler = train.SeededShuffle(5, seed=3)
        loader = accelerator.prepare(DataLoader(Keys(), batch_size=2, sampler=sampler, drop_last=True,
                                                generator=torch.Generator().manual_seed(3)))
        return [[tuple(k) for k in b.tolist()] for b in islice(train.infinite(accelerator, loader, sampler, batches_seen), count)]

    torch_state, python_state = torch.get_rng_state(), random.getstate()
    whole = stream(0, 7)  # 2 batches per epoch (5 samples, the last dropped): 3.5 epochs
    assert torch.equal(torch.get_rng_state(), torch_state) and random.getstate() == python_state
    for start in range(1, 7):  # mid-epoch and at epoch starts alike
        assert stream(start, 7 - start) == whole[start:], start
    epochs = [whole[i] + whole[i + 1] for i in (0, 2, 4)]
    assert all(len({index for index, _ in epoch}) == 4 for epoch in epochs)  # each epoch a permutation
    assert len({tuple(index for index, _ in epoch) for epoch in epochs}) == 3  # reshuffled every epoch
    assert len({seed for epoch in epochs for _, seed in epoch}) == 12  # a crop seed of its own for every sample


def test_a_finished_run_continues_with_more_steps_and_new_settings(data, tmp_path, caplog):
    out = tmp_path / "out"
    run(base_args(data, out, "--checkpointing_steps", "2", steps=3))
    assert checkpoint_steps(out) == [2, 3]  # the final step is saved although 3 is not a multiple of 2
    # A second stage (coarse-to-fine: larger crops, another loss weight) picks up where the first ended. The learning
    # rate is the checkpoint's (its schedule is restored), and a different --learning_rate is reported, not obeyed.
    with caplog.at_level(logging.WARNING):
        run(base_args(data, out, "--checkpointing_steps", "2", "--resolution", "80", "--style_weight", "5",
                      "--resume_from_checkpoint", "latest", steps=5) + ["--learning_rate", "5e-3"])
    assert [r["step"] for r in read_losses(out)] == [1, 2, 3, 4, 5]
    assert {r["lr"] for r in read_losses(out)} == {1e-3}
    assert "--learning_rate 0.005 is ignored" in caplog.text
    assert checkpoint_steps(out) == [2, 3, 4, 5]


def test_resume_drops_the_repeated_rows_of_the_loss_log_and_sums_the_wall_clock(data, tmp_path):
    out = tmp_path / "out"
    run(base_args(data, out, "--checkpointing_steps", "2", steps=4))
    # As if killed after logging step 4 but before saving its checkpoint (and mid-write of a row): resuming from
    # checkpoint-2 does steps 3 and 4 again, which used to append them twice (85 rows for 60 steps).
    shutil.rmtree(out / "checkpoint-4")
    with (out / "losses.jsonl").open("a") as f:
        f.write('{"step": 5, "g_lo')
    step_json = out / "checkpoint-2" / "step.json"
    step_json.write_text(json.dumps({**json.loads(step_json.read_text()), "elapsed": 7200.0}))  # two hours so far
    run(base_args(data, out, "--checkpointing_steps", "2", "--resume_from_checkpoint", "latest", steps=4))
    assert [r["step"] for r in read_losses(out)] == [1, 2, 3, 4]
    assert 7200 < json.loads((out / "checkpoint-4" / "step.json").read_text())["elapsed"] < 7200 + 600
    assert "for 4 steps (2.0" in (out / "README.md").read_text()  # hours: the resumed run's minute is added to them


def test_resume_errors_on_a_folder_that_is_not_a_checkpoint(data, tmp_path):
    with pytest.raises(FileNotFoundError, match="not a complete checkpoint folder"):
        run(base_args(data, tmp_path / "out", "--resume_from_checkpoint", str(tmp_path / "checkpoint-7.tmp")))


# Runs scripts/train.py with save_checkpoint's model export pausing inside checkpoint-<PAUSE_AT>.tmp (after accelerate's
# state is written), and a marker file saying so: a kill can then land in the middle of a save every time.
PAUSING_TRAIN = """
import importlib.util, pathlib, sys, time
script, marker, pause_at, *argv = sys.argv[1:]
spec = importlib.util.spec_from_file_location("train", script)
train = importlib.util.module_from_spec(spec)
spec.loader.exec_module(train)
export_model = train.export_model

def pausing_export(model, ema, folder, *args, **kwargs):
    export_model(model, ema, folder, *args, **kwargs)
    if pathlib.Path(folder).parent.name in (f"checkpoint-{pause_at}", f"checkpoint-{pause_at}.tmp"):
        pathlib.Path(marker).write_text(str(folder))
        time.sleep(3600)

train.export_model = pausing_export
train.main(argv)
"""


def test_sigkill_in_the_middle_of_a_save_then_resume(data, tmp_path):
    out, marker = tmp_path / "out", tmp_path / "paused"
    argv = base_args(data, out, "--checkpointing_steps", "1", "--checkpoints_total_limit", "3", steps=100000)
    with open(tmp_path / "log.txt", "w") as log:  # a file, not a pipe: nobody reads a pipe until the end, and it fills
        process = subprocess.Popen([sys.executable, "-c", PAUSING_TRAIN, str(SCRIPT), str(marker), "3", *argv],
                                   env=subprocess_env(), stdout=log, stderr=log)
    try:
        wait_for(marker.is_file, 180, "the save of checkpoint-3 to be under way", process)
        process.kill()
        process.wait(30)
    finally:
        process.kill()
        process.wait(30)
    assert process.returncode == -signal.SIGKILL
    assert (out / "checkpoint-3.tmp" / "model").is_dir()  # killed with a partial checkpoint on disk ...
    assert checkpoint_steps(out) == [1, 2]  # ... which is not listed; the complete ones are intact
    assert all((out / f"checkpoint-{s}" / "step.json").is_file() for s in (1, 2))

    run(base_args(data, out, "--checkpointing_steps", "1", "--checkpoints_total_limit", "3",
                  "--resume_from_checkpoint", "latest", steps=4))
    assert [r["step"] for r in read_losses(out)][-2:] == [3, 4]  # step 3 again: its checkpoint never completed
    assert checkpoint_steps(out) == [2, 3, 4]
    assert not list(out.glob("*.tmp"))
    HybridStyle.from_pretrained(out)


def test_a_fixed_batch_is_learned(tmp_path):
    """One content and one style image at the crop size (max_crop_scale 1): every step sees the same pair, and the
    generator loss must fall (measured 11.1 -> 3.4 in 10 steps)."""
    for folder, image in (("content", make_image(32, 32, seed=1)), ("style", make_texture(32, 32, seed=2))):
        (tmp_path / folder).mkdir()
        image.save(tmp_path / folder / "a.png")
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"block_out_channels": [4, 8, 16], "encoder_bottleneck_layers": 1,
                                  "decoder_bottleneck_layers": 1}))
    out = tmp_path / "out"
    run(["--content_dir", str(tmp_path / "content"), "--style_dir", str(tmp_path / "style"), "--architecture", "fast",
         "--model_config", str(config), "--output_dir", str(out), "--resolution", "32", "--max_crop_scale", "1",
         "--train_batch_size", "1", "--max_train_steps", "10", "--checkpointing_steps", "1000", "--validation_steps",
         "1000", "--validation_resolution", "32", "--num_validation_pairs", "1", "--report_to", "none", "--seed", "0",
         "--learning_rate", "1e-2", "--lr_warmup_steps", "0", "--adv_weight", "0"])
    losses = [r["g_loss"] for r in read_losses(out)]
    assert len(losses) == 10
    assert max(losses[-3:]) < 0.5 * losses[0], losses


def test_sigterm_saves_a_checkpoint_and_exits_cleanly(data, tmp_path):
    out = tmp_path / "out"
    with open(tmp_path / "log.txt", "w") as log:
        process = subprocess.Popen([sys.executable, str(SCRIPT), *base_args(data, out, steps=100000)], env=subprocess_env(),
                                   stdout=log, stderr=log)
    try:
        wait_for(lambda: (out / "losses.jsonl").is_file() and (out / "losses.jsonl").stat().st_size > 0, 120,
                 "the first step", process)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=120)
    finally:
        process.kill()
    stderr = (tmp_path / "log.txt").read_text()
    assert process.returncode == 0, stderr[-3000:]
    last = read_losses(out)[-1]["step"]
    assert checkpoint_steps(out) == [last]
    assert "stop requested: saved checkpoint-" in stderr


@pytest.mark.slow
def test_two_cpu_processes_train_in_sync(data, tmp_path):
    out = tmp_path / "out"
    argv = base_args(data, out, "--cpu", "--num_discriminators", "2", "--identity_weight", "0.5", "--checkpointing_steps", "2",
                     "--validation_steps", "2", "--gradient_accumulation_steps", "2", steps=3)
    for _attempt in range(3):
        launch = [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2", "--num_machines",
                  "1", "--mixed_precision", "no", "--dynamo_backend", "no", "--main_process_port", str(free_port())]
        result = subprocess.run([*launch, str(SCRIPT), *argv], env=subprocess_env(), capture_output=True, text=True,
                                timeout=300)
        log = result.stdout + result.stderr
        if result.returncode == 0 or "address already in use" not in log.lower():
            break
        shutil.rmtree(out, ignore_errors=True)  # the port was taken between free_port() and the bind: again
    assert result.returncode == 0, log[-4000:]
    # accelerate's launcher pins OMP_NUM_THREADS=1; the script shares this machine's CPUs out between the 2 ranks.
    assert f"{max(1, len(os.sched_getaffinity(0)) // 2)} CPU threads per process" in log
    for rank in (0, 1):
        assert f"process {rank}/2 (DistributedType.MULTI_CPU)" in log
        assert (out / "checkpoint-2" / f"random_states_{rank}.pkl").is_file()
    for name in ("generator", "discriminator_0", "discriminator_1"):
        assert f"{name} weights are identical on all 2 processes" in log
        fingerprints = {line.rsplit(" ", 1)[1] for line in log.splitlines() if f": {name} fingerprint" in line}
        assert len(fingerprints) == 1
    records = read_losses(out)
    assert [r["step"] for r in records] == [1, 2, 3] and "diversity" in records[0] and "identity" in records[0]
    assert (out / "validation" / "step-0000002.png").is_file()
    HybridStyle.from_pretrained(out)


def test_cpu_threads_are_shared_between_the_processes_of_a_node(monkeypatch):
    available = len(os.sched_getaffinity(0))
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    assert train.cpu_threads_per_process() == available
    monkeypatch.setenv("LOCAL_WORLD_SIZE", str(available * 4))  # more ranks than CPUs: still one thread each
    assert train.cpu_threads_per_process() == 1
    with pytest.raises(SystemExit):
        train.parse_args(["--content_dir", "c", "--style_dir", "s", "--cpu_threads", "0"])


@pytest.mark.parametrize("gan_loss", ["lsgan", "hinge", "bce"])
def test_each_gan_loss_trains(data, tmp_path, gan_loss):
    out = tmp_path / gan_loss
    run(base_args(data, out, "--gan_loss", gan_loss, steps=2))
    records = read_losses(out)
    assert all(math.isfinite(r["d_loss"]) and math.isfinite(r["g_adv"]) for r in records)


def test_gradient_accumulation_steps_both_players_once_per_step(data, tmp_path):
    out = tmp_path / "out"
    run(base_args(data, out, "--gradient_accumulation_steps", "2", "--checkpointing_steps", "2", steps=2))
    assert [r["step"] for r in read_losses(out)] == [1, 2]
    for name in ("optimizer.bin", "optimizer_1.bin"):  # generator, discriminator
        state = torch.load(out / "checkpoint-2" / name, weights_only=False)["state"]
        assert {float(s["step"]) for s in state.values()} == {2.0}, name


def test_two_discriminators_add_a_larger_patch_and_the_diversity_term(data, tmp_path):
    out = tmp_path / "out"
    run(base_args(data, out, "--num_discriminators", "2", "--checkpointing_steps", "2", "--mixed_precision", "bf16", steps=2))
    assert all(r["diversity"] > 0 for r in read_losses(out))
    layers = [json.loads((out / "checkpoint-2" / f"discriminator_{i}" / "config.json").read_text())["num_layers"] for i in (0, 1)]
    assert layers == [3, 4]


def test_single_style_image_fills_the_batch(data, tmp_path, monkeypatch):
    style = write_textures(tmp_path / "one_style", 1, 5, size=96)
    init = tmp_path / "init"
    torch.manual_seed(0)  # the starting model must not depend on which tests ran before
    HybridStyle(**TINY).save_pretrained(init)
    batch_sizes = []
    original = train.losses.style_loss

    def recording_style_loss(output_features, style_features, kind="meanstd"):
        batch_sizes.append(style_features[0].shape[0])
        return original(output_features, style_features, kind)

    monkeypatch.setattr(train.losses, "style_loss", recording_style_loss)
    argv = base_args(data, tmp_path / "out", "--init_from", str(init), "--train_batch_size", "4", steps=3)
    argv[argv.index("--style_dir") + 1] = str(style)
    run(argv)
    assert batch_sizes == [4, 4, 4]
    HybridStyle.from_pretrained(tmp_path / "out")


def test_unreadable_image_is_skipped_with_a_warning(data, tmp_path, caplog):
    content = tmp_path / "content"
    shutil.copytree(data["content"], content)
    (content / "000_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    argv = base_args(data, tmp_path / "out", steps=2)
    argv[argv.index("--content_dir") + 1] = str(content)
    caplog.set_level(logging.INFO)
    run(argv)
    assert "000_broken.png" in caplog.text
    assert "1 of 9 training images are unreadable and will be skipped" in caplog.text
    assert [r["step"] for r in read_losses(tmp_path / "out")] == [1, 2]


def test_empty_image_folder_is_a_clear_error(data, tmp_path):
    argv = base_args(data, tmp_path / "out")
    argv[argv.index("--style_dir") + 1] = str(tmp_path)
    with pytest.raises(ValueError, match="the dataset has no images"):
        run(argv)


def test_training_from_a_local_hf_dataset(data, tmp_path, monkeypatch):
    pytest.importorskip("datasets")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    argv = base_args(data, tmp_path / "out", steps=1)
    i = argv.index("--content_dir")
    argv[i:i + 2] = ["--content_dataset", str(data["content"])]
    run(argv)
    assert [r["step"] for r in read_losses(tmp_path / "out")] == [1]


def test_push_to_hub_uploads_card_config_and_weights_offline(data, tmp_path, monkeypatch):
    from huggingface_hub import HfApi, RepoUrl

    uploads = []

    def create_repo(self, repo_id, **kwargs):
        return RepoUrl(f"https://huggingface.co/{repo_id}")

    def upload_folder(self, repo_id, folder_path, commit_message=None, **kwargs):
        files = {p.name: p.read_bytes() for p in Path(folder_path).iterdir()}
        uploads.append({"repo_id": repo_id, "files": files, "message": commit_message, "token": self.token})
        return f"https://huggingface.co/{repo_id}/commit/0"

    monkeypatch.setattr(HfApi, "create_repo", create_repo)
    monkeypatch.setattr(HfApi, "upload_folder", upload_folder)
    hub = ["--push_to_hub", "--hub_model_id", "me/tiny-style", "--hub_token", "hf_SECRET"]
    run(base_args(data, tmp_path / "out", *hub, steps=1))

    assert len(uploads) == 1
    upload = uploads[0]
    assert upload["repo_id"] == "me/tiny-style" and upload["token"] == "hf_SECRET" and "step 1" in upload["message"]
    assert {"README.md", "config.json", "diffusion_pytorch_model.safetensors"} <= set(upload["files"])
    card = upload["files"]["README.md"].decode()
    assert "me/tiny-style" in card and "library_name: diffusers" in card
    assert "hf_SECRET" not in card and "hf_SECRET" not in (tmp_path / "out" / "README.md").read_text()
    assert json.loads(upload["files"]["config.json"])["block_out_channels"] == TINY["block_out_channels"]


def test_argument_errors():
    with pytest.raises(SystemExit):
        train.parse_args(["--content_dir", "a", "--style_dir", "b", "--push_to_hub"])
    with pytest.raises(SystemExit):
        train.parse_args(["--content_dir", "a", "--style_dir", "b", "--checkpointing_steps", "0"])
    assert train.redacted_argv(["--hub_token", "x", "--hub_token=y", "--seed", "1"]) == [
        "--hub_token", "***", "--hub_token=***", "--seed", "1"]


def test_missing_tensorboard_falls_back_with_a_warning_before_the_first_step(data, tmp_path):
    # The default --report_to tensorboard without the package: accelerate drops the tracker quietly, and the run used
    # to die at its last step (logging the validation grid) after all the training.
    out = tmp_path / "out"
    argv = base_args(data, out, "--report_to", "tensorboard", "--validation_steps", "1", steps=2)
    hide = ("import runpy, sys; sys.modules['tensorboard'] = None; sys.modules['tensorboardX'] = None; "
            f"sys.argv = [{str(SCRIPT)!r}, *sys.argv[1:]]; runpy.run_path({str(SCRIPT)!r}, run_name='__main__')")
    result = subprocess.run([sys.executable, "-c", hide, *argv], env=subprocess_env(), capture_output=True, text=True,
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "--report_to tensorboard: the tensorboard package is not installed" in result.stderr
    assert result.stderr.index("not installed") < result.stderr.index("train:")  # before the first step
    assert [r["step"] for r in read_losses(out)] == [1, 2]
    assert sorted(p.name for p in (out / "validation").iterdir()) == ["step-0000001.png", "step-0000002.png"]
    HybridStyle.from_pretrained(out)


def test_a_relaunch_refuses_while_the_run_holding_the_output_dir_lives_and_takes_over_a_stale_lock(data, tmp_path):
    # After Ctrl-C under `accelerate launch` the trainer goes on saving for seconds; a relaunch must not train beside it.
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; sys.path.insert(0, sys.argv[1]); import train\n"
         "with train.output_dir_lock(sys.argv[2]):\n    print('locked', flush=True); time.sleep(120)",
         str(SCRIPT.parent), str(out)], env=subprocess_env(), stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(SystemExit, match=rf"another training run \(pid {holder.pid} on {socket.gethostname()}\) is "
                                             rf"using --output_dir {out}"):
            run(base_args(data, out, steps=1))
        assert not (out / "losses.jsonl").exists()
    finally:
        holder.kill()
        holder.wait(30)
    # The holder is gone (killed: no clean release), so its lock is stale and the next run takes it over.
    assert json.loads((out / train.LOCK_NAME).read_text())["pid"] == holder.pid
    run(base_args(data, out, steps=1))
    assert [r["step"] for r in read_losses(out)] == [1]
    assert (out / train.LOCK_NAME).read_text() == ""  # released at the end


def test_output_dir_lock_without_flock_judges_by_the_pid(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_flock(fd, operation):
        raise OSError(37, "No locks available")  # some network filesystems

    monkeypatch.setattr(fcntl, "flock", no_flock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = tmp_path / train.LOCK_NAME
    try:
        lock.write_text(json.dumps({"pid": sleeper.pid, "host": socket.gethostname()}))
        with pytest.raises(SystemExit, match=f"pid {sleeper.pid} on"):
            with train.output_dir_lock(str(tmp_path)):
                pass
    finally:
        sleeper.kill()
        sleeper.wait(30)
    with train.output_dir_lock(str(tmp_path)):
        assert json.loads(lock.read_text())["pid"] == os.getpid()
    assert f"taking over the stale lock of pid {sleeper.pid}" in capsys.readouterr().err


def test_output_dir_lock_without_flock_takes_over_a_reused_pid(tmp_path, monkeypatch, capsys):
    import fcntl

    def no_flock(fd, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_flock)
    sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    lock = tmp_path / train.LOCK_NAME
    start = train.process_start_time(sleeper.pid)
    assert isinstance(start, int) and start > 0
    try:
        # The pid lives but started at another time: the lock's holder died and its pid went to this process.
        lock.write_text(json.dumps({"pid": sleeper.pid, "pid_start": start + 1, "host": socket.gethostname()}))
        with train.output_dir_lock(str(tmp_path)):
            written = json.loads(lock.read_text())
            assert written["pid"] == os.getpid() and written["pid_start"] == train.process_start_time(os.getpid())
        assert f"taking over the stale lock of pid {sleeper.pid}" in capsys.readouterr().err
        # The same pid and start time: the holder itself is still running.
        lock.write_text(json.dumps({"pid": sleeper.pid, "pid_start": start, "host": socket.gethostname()}))
        with pytest.raises(SystemExit, match=f"pid {sleeper.pid} on"):
            with train.output_dir_lock(str(tmp_path)):
                pass
    finally:
        sleeper.kill()
        sleeper.wait(30)


def test_resume_continues_exactly_the_uninterrupted_run(data, tmp_path):
    """Stopped after step 2 and resumed, a run logs the same losses and ends with the same weights as one never stopped.

    Everything random is in play: shuffled loaders of different lengths (content 8 images = 4 batches per epoch, style
    6 = 3, so the resume is mid-epoch for both and both cross an epoch end afterwards), random crops, skip dropout,
    the rescaled style loss's random factor, the GAN and EMA.
    """
    style = write_textures(tmp_path / "style6", 6, 3)
    config = tmp_path / "fast.json"
    config.write_text(json.dumps({"block_out_channels": [4, 8, 16], "encoder_bottleneck_layers": 1,
                                  "decoder_bottleneck_layers": 1, "style_modulation_dim": 4}))

    def argv(out: Path, *extra: str, steps: int) -> list[str]:
        args = base_args(data, out, "--architecture", "fast", "--model_config", str(config), "--skip_dropout", "0.5",
                         "--rescaled_style_weight", "1", "--use_ema", "--checkpointing_steps", "2", "--resolution", "32",
                         "--validation_resolution", "32", *extra, steps=steps)
        args[args.index("--style_dir") + 1] = str(style)
        return args

    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    run(argv(whole, steps=5))
    run(argv(resumed, steps=2))
    run(argv(resumed, "--resume_from_checkpoint", "latest", steps=5))

    expected, got = read_losses(whole), read_losses(resumed)
    assert [r["step"] for r in got] == [1, 2, 3, 4, 5]
    for a, b in zip(expected, got, strict=True):
        assert a.keys() == b.keys()
        for key in a:
            assert math.isclose(a[key], b[key], rel_tol=1e-5, abs_tol=1e-7), (a["step"], key, a[key], b[key])
    from safetensors.torch import load_file

    for name in ("model.safetensors", "model_1.safetensors"):  # generator, discriminator
        want, have = load_file(whole / "checkpoint-5" / name), load_file(resumed / "checkpoint-5" / name)
        assert want.keys() == have.keys()
        for key in want:
            torch.testing.assert_close(have[key], want[key], rtol=1e-5, atol=1e-6, msg=f"{name} {key}")
