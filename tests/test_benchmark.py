"""scripts/benchmark.py in --quick --tiny mode: every section present, every figure finite and positive (no timing claims)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import load_script
from PIL import Image

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
            elif path.startswith("app") and "growth" in path:
                pass  # a change in memory: may be zero or negative
            elif path.startswith("app") and (path.endswith(".failed") or path.endswith("cache_mb")):
                assert value >= 0, path  # an empty cache before the first request; failures checked elsewhere
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
               "fast video 64x48", "base video 128x72", "fps loaded", "app memory: idle")
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


def test_app_section_serves_every_request_and_reads_the_apps_memory(results):
    """The real app.py (tiny model) in a subprocess, driven over HTTP: every round's requests answered at their size."""
    a = results["app"]
    assert len(a["rounds"]) == len(a["rss_mb"]) == 3 and a["requests"] == 3 * 2 and a["failed"] == 0  # --quick
    sides = results["config"]["app_content_sides"]
    for number, reading in enumerate(a["rounds"], 1):
        assert reading["round"] == number and reading["hwm_mb"] >= reading["rss_mb"] > 0 and reading["threads"] >= 1
        for request in reading["requests"]:
            assert request["error"] is None
            side = int(request["content"].removeprefix("content_").removesuffix(".jpg"))
            assert side in sides and 1 <= request["styles"] <= 3
            assert max(int(v) for v in request["result"].split("x")) == request["size"] == max(side, 128)
    assert a["peak_mb"] == max(a["idle"]["hwm_mb"], *(r["hwm_mb"] for r in a["rounds"]))
    assert a["growth_mb"] == pytest.approx(a["rss_mb"][-1] - a["rss_mb"][a["settle_round"] - 1])
    assert a["rounds"][-1]["cache_mb"] > a["idle"]["cache_mb"]  # the uploads reached the app's own cache folder


def test_summarize_app_rounds_measures_growth_after_the_settle_round():
    def reading(rss, hwm, failed=0):
        return {"rss_mb": rss, "hwm_mb": hwm, "requests": [{"error": "boom"}] * failed + [{"error": None}] * 2}

    idle = {"rss_mb": 400.0, "hwm_mb": 450.0}
    rounds = [reading(900, 1000), reading(1100, 1300), reading(1200, 1400, failed=1), reading(1150, 1400),
              reading(1260, 1500)]
    summary = benchmark.summarize_app_rounds(idle, rounds, settle_round=3)
    assert summary["rss_mb"] == [900, 1100, 1200, 1150, 1260] and summary["idle_rss_mb"] == 400
    assert summary["growth_mb"] == 60 and summary["growth_mb_per_round"] == 30 and summary["peak_growth_mb"] == 100
    assert summary["later_rss_range_mb"] == [1150, 1260] and summary["peak_mb"] == 1500
    assert summary["requests"] == 11 and summary["failed"] == 1
    # Fewer rounds than the settle round: growth from the last round to itself, not an error.
    short = benchmark.summarize_app_rounds(idle, rounds[:2], settle_round=3)
    assert short["settle_round"] == 2 and short["growth_mb"] == 0
    # The peak counts the idle reading too (a startup peak above every round's).
    assert benchmark.summarize_app_rounds({"rss_mb": 400.0, "hwm_mb": 2000.0}, rounds)["peak_mb"] == 2000


def test_app_jobs_give_every_round_each_photo_size_and_a_style_mix(tmp_path):
    sides = list(benchmark.APP_CONTENT_SIDES)
    contents, styles = benchmark.app_inputs(tmp_path, sides)
    for path, side in zip(contents, sides):
        with Image.open(path) as image:
            assert max(image.size) == side and min(image.size) == side * 3 // 4
    style_mixes = set()
    for r in range(6):
        jobs = benchmark.app_jobs(r, 4, contents, styles, sides)
        assert sorted(job["content"] for job in jobs) == sorted(contents)  # one large photo in every round
        assert sorted(job["size"] for job in jobs) == [256, 640, 1024, 1536]  # 1600 px: the app's 1536 px maximum
        style_mixes.add(tuple(len(job["styles"]) for job in jobs))
    assert len(style_mixes) > 1 and {n for mix in style_mixes for n in mix} == {1, 2, 3}


def test_process_memory_reads_another_process_and_refuses_a_dead_one():
    # 64 MB written (not calloc'd zero pages, which would not be resident), then the child waits for its stdin.
    child = subprocess.Popen([sys.executable, "-c", "import sys; b = b'x' * (64 * 2**20); sys.stdin.read()"],
                             stdin=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while (reading := benchmark.process_memory(child.pid))["rss_mb"] < 64:
            assert time.monotonic() < deadline, reading
            time.sleep(0.05)
        assert reading["hwm_mb"] >= reading["rss_mb"] and reading["threads"] >= 1
    finally:
        child.communicate(b"")
    with pytest.raises(RuntimeError, match="cannot read /proc"):
        benchmark.process_memory(child.pid)
