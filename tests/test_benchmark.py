"""scripts/benchmark.py in --quick --tiny mode: every section present, every figure finite and positive (no timing claims)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from conftest import load_script

REPO_ROOT = Path(__file__).resolve().parents[1]


benchmark = load_script("benchmark")


def _numbers(tree, path=""):
    """Every (path, number) in a nested dict/list, bools excluded."""
    if isinstance(tree, dict):
        for key, value in tree.items():
            yield from _numbers(value, f"{path}.{key}")
    elif isinstance(tree, list):
        for i, value in enumerate(tree):
            yield from _numbers(value, f"{path}[{i}]")
    elif isinstance(tree, (int, float)) and not isinstance(tree, bool):
        yield path, tree


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    returned = benchmark.main(["--quick", "--tiny", "--json", str(out)])
    written = json.loads(out.read_text())
    assert written == json.loads(json.dumps(returned))
    return written


def test_busy_section_times_peer_and_models_under_both_wait_policies(results):
    busy = results["busy"]
    assert busy["load_processes"] == 1  # --quick
    for condition in ("quiet", "loaded"):
        assert set(busy[condition]) == {"loadavg_1min", "peer", *benchmark.MODELS}
        for who in ("peer", *benchmark.MODELS):
            by_policy = busy[condition][who]
            assert by_policy["PASSIVE"]["OMP_WAIT_POLICY"] == "PASSIVE"
            assert by_policy["default"]["OMP_WAIT_POLICY"] is None  # the probe really ran with OpenMP's default
            assert by_policy["passive_vs_default"] > 0
        assert busy[condition]["peer"]["default"]["vs_peer"] == pytest.approx(1.0)


def test_every_section_is_reported(results):
    assert set(benchmark.SECTIONS) <= set(results)
    assert results["config"]["sections"] == list(benchmark.SECTIONS)
    models = set(benchmark.MODELS)
    assert set(results["inference"]) == set(results["stylize"]) == set(results["training"]) == models
    for per_model in results["inference"].values():
        assert set(per_model["stages"]) == {"encoder", "transform", "decoder"}
        for stage in per_model["stages"].values():
            assert set(stage) == {"fp32", "bf16"}
    for per_model in results["stylize"].values():
        assert {"fp32", "bf16"} <= set(per_model)
    sizes = results["config"]["train_resolutions"]
    for per_model in results["training"].values():
        assert set(per_model["runs"]) == {f"{p}@{r}" for r in sizes for p in ("fp32", "bf16")}
        assert per_model["runs"][f"fp32@{sizes[0]}"]["vs_baseline"] == pytest.approx(1.0)
    for name in models:
        assert set(results["memory"][name]) == {str(s) for s in results["config"]["memory_sizes"]}
        assert results["uhd"][name]["size"] == "320x176" and results["uhd"][name]["peak_mb"] > 0
    assert set(results["memory"]["peer"]) == {str(results["config"]["memory_sizes"][0])}
    for name in models:
        assert set(results["onnx"][name]) == {"graph", "stylize"}
        assert results["onnx"][name]["stylize"]["vs_pytorch"] is not None
    for name in models:
        video = results["video"][name]
        assert set(video) == set(results["config"]["video_sizes"]) == {"64x48", "128x72"}
        for label, run in video.items():
            assert run["size"] == label and set(run) == {"quiet", "loaded", "loaded_vs_quiet", "size"}
            assert run["loaded_vs_quiet"] == pytest.approx(run["loaded"]["fps"] / run["quiet"]["fps"])
            assert run["quiet"]["fps"] == pytest.approx(results["video"]["frames"] / run["quiet"]["seconds"])


def test_the_background_load_is_stopped(results):
    """The busy loops of the video section's "loaded" runs are gone once it is done."""
    import os

    mine = []
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            fields = dict(line.split(":\t", 1) for line in status.read_text().splitlines() if ":\t" in line)
            cmdline = (status.parent / "cmdline").read_bytes()
        except OSError:
            continue  # a process that ended meanwhile
        if fields.get("PPid", "").strip() == str(os.getpid()) and b"getppid" in cmdline:
            mine.append(status.parent.name)
    assert not mine


def test_every_figure_is_finite_and_positive(results):
    checked = 0
    for section in benchmark.SECTIONS:
        for path, value in _numbers(results[section], section):
            assert math.isfinite(value), path
            if path.startswith("memory") and ("working_mb" in path or "vs_baseline" in path):
                # A tiny model's stylization can fit in memory the allocator already holds.
                assert value >= 0, path
            else:
                assert value > 0, path
            checked += 1
    assert checked > 100
    # Ratios against the in-run baselines are filled in, not left as null.
    for per_model in results["inference"].values():
        for stage in per_model["stages"].values():
            assert stage["fp32"]["vs_peer"] is not None and stage["bf16"]["x_reference"] is not None
    for name, per_model in results["stylize"].items():
        stylize = per_model["fp32"]
        assert stylize["vs_peer"] == pytest.approx(stylize["median_s"] / results["peer"]["median_s"])
        assert results["uhd"][name]["vs_peer_512"] == pytest.approx(results["uhd"][name]["seconds"] / results["peer"]["median_s"])
    for per_model in results["training"].values():
        for run in per_model["runs"].values():
            assert run["images_per_s"] == pytest.approx(per_model["batch_size"] / run["step"]["median_s"])


def test_report_mentions_every_figure(results):
    report = benchmark.format_report(results)
    needles = ("reference", "peer stylize_with", "encoder", "decoder", "transform", "fast stylize fp32",
               "base stylize fp32", "images/s", "memory fast", "memory base", "uhd stylize", "onnx graph", "onnx stylize",
               "fast video 64x48", "base video 128x72", "fps loaded")
    for needle in needles:
        assert needle in report


def test_sections_subset_and_errors(capsys):
    only = benchmark.main(["--quick", "--tiny", "--sections", "reference"])
    assert set(only) == {"config", "reference"}
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--sections", "inference,warp"])
    assert "unknown section(s) warp" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        benchmark.parse_args(["--models", "fast,huge"])
    assert "--models takes a comma-separated subset of fast, base" in capsys.readouterr().err
