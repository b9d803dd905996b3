"""Shared fixtures and the ModelTesterMixin for hybridstyle's tests.

Tests never touch the network: HF_HUB_OFFLINE is set here, before anything imports huggingface_hub (which reads it
once at import), and the ``offline`` fixture additionally makes every socket connection fail.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import socket  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image  # noqa: E402

# The test models are tiny: with several threads, thread synchronisation costs more than the convolutions (20x slower
# measured on a 2-core machine shared with a training job). HYBRIDSTYLE_TEST_THREADS overrides.
torch.set_num_threads(int(os.environ.get("HYBRIDSTYLE_TEST_THREADS", "1")))

REPO_ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = REPO_ROOT / "hybridstyle" / "examples"
WEIGHTS_NAME = "diffusion_pytorch_model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt")

# Small enough that a forward pass takes milliseconds, deep enough to exercise every code path (4 blocks, 8x down).
TINY_CONFIG = {"block_out_channels": (4, 8, 16, 32), "layers_per_block": (1, 1, 1, 1)}


def load_script(name: str):
    """Import ``scripts/<name>.py`` (scripts are not a package) as a module."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"hybridstyle_{name}", REPO_ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> int:
    """A TCP port free at this moment (another process may take it before ours binds it: see serve_on_a_free_port)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def serve_on_a_free_port(launch, demo, attempts: int = 5) -> str:
    """``launch(demo, ...)`` (app.launch) on a free port, again on another if the port was taken meanwhile; its URL."""
    import warnings

    for attempt in range(attempts):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                _, url, _ = launch(demo, server_name="127.0.0.1", server_port=free_port(), prevent_thread_lock=True,
                                   quiet=True)
            return url
        except OSError as err:  # Gradio: "Cannot find empty port in range: N-N"
            if "port" not in str(err).lower() or attempt == attempts - 1:
                raise
    raise AssertionError("unreachable")


def make_image(width: int, height: int, seed: int = 0, saturation: float = 1.0) -> Image.Image:
    """A smooth, colourful RGB test image (gradients plus low-frequency waves) with some texture."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float64)
    phases = rng.uniform(0, 2 * np.pi, size=3)
    freqs = rng.uniform(1.0, 3.0, size=3)
    channels = [0.5 + 0.4 * np.sin(freqs[c] * 2 * np.pi * (x / width + y / height) / 2 + phases[c]) for c in range(3)]
    rgb = np.stack(channels, axis=-1) + rng.normal(0, 0.02, size=(height, width, 3))
    grey = rgb.mean(axis=-1, keepdims=True)
    rgb = grey + saturation * (rgb - grey)
    return Image.fromarray((rgb.clip(0, 1) * 255).round().astype(np.uint8))


def make_texture(width: int, height: int, seed: int = 0) -> Image.Image:
    """A high-contrast texture (blocky noise) used as a style: its statistics differ clearly from ``make_image``."""
    rng = np.random.default_rng(seed)
    small = rng.random((max(1, height // 4), max(1, width // 4), 3))
    return Image.fromarray((small * 255).astype(np.uint8)).resize((width, height), Image.NEAREST)


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """HF_HUB_OFFLINE=1 and no sockets: any attempt to reach the Hub fails loudly instead of silently downloading."""
    import huggingface_hub.constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)

    def refuse(*args, **kwargs):
        raise OSError("network access attempted in an offline test")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)


@pytest.fixture
def tiny_model():
    """A tiny HybridStyle with seeded random weights, in eval mode."""
    from hybridstyle import HybridStyle

    torch.manual_seed(0)
    return HybridStyle(**TINY_CONFIG).eval()


def he_initialized(model: torch.nn.Module) -> torch.nn.Module:
    """``model`` with He-initialised convs, seeded.

    PyTorch's default conv init shrinks activations layer after layer, so an untrained model's output hardly depends
    on its input; He init keeps their scale, so (as in a trained model) a style visibly changes the output.
    """
    torch.manual_seed(0)
    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            # The biases too: left as constructed, they would depend on what earlier tests drew from the global RNG.
            torch.nn.init.zeros_(module.bias)
    # HybridStyleFast's style modulation starts at zero (no effect): made random as if trained, of moderate strength
    # (scales of about +-0.4), so the modulated decoder still paints in range.
    modulation = getattr(model, "modulation", None)
    if modulation is not None:
        for layer in modulation.embed:
            if isinstance(layer, torch.nn.Linear):
                torch.nn.init.kaiming_normal_(layer.weight, nonlinearity="relu")
                torch.nn.init.zeros_(layer.bias)
        for head in modulation.heads:
            torch.nn.init.normal_(head.weight, std=0.1)
            torch.nn.init.zeros_(head.bias)
    return model


def _public_config(model) -> dict:
    # JSON turns tuples into lists; the values, not the container type, must survive the round trip.
    return {k: list(v) if isinstance(v, tuple) else v for k, v in model.config.items() if not k.startswith("_")}


def _cast(value, dtype: torch.dtype):
    if isinstance(value, torch.Tensor):
        return value.to(dtype) if value.is_floating_point() else value
    if isinstance(value, (list, tuple)):
        return type(value)(_cast(v, dtype) for v in value)
    return value


def _to_device(value, device: str):
    if isinstance(value, torch.Tensor):
        return value.to(device)
    if isinstance(value, (list, tuple)):
        return type(value)(_to_device(v, device) for v in value)
    return value


def _as_tensors(output) -> list[torch.Tensor]:
    if isinstance(output, torch.Tensor):
        return [output]
    if isinstance(output, dict):
        return [t for value in output.values() for t in _as_tensors(value)]
    if isinstance(output, (list, tuple)):
        return [t for value in output for t in _as_tensors(value)]
    return []


class ModelTesterMixin:
    """Checks every diffusers-style model of the package must pass (in the spirit of diffusers' ModelTesterMixin).

    A test class sets ``model_class`` and implements ``init_kwargs`` and ``inputs``; it gets save/load round trips,
    the safetensors-only folder layout, determinism and bfloat16 behaviour for free.
    """

    model_class: type
    # bf16 keeps ~3 significant digits; outputs of a few layers stay within a few percent of their float32 values.
    bf16_relative_tolerance = 0.05

    def init_kwargs(self) -> dict:
        raise NotImplementedError

    def inputs(self) -> dict:
        raise NotImplementedError

    def make_model(self, seed: int = 0):
        torch.manual_seed(seed)
        return self.model_class(**self.init_kwargs()).eval()

    def run(self, model, inputs: dict | None = None) -> list[torch.Tensor]:
        inputs = self.inputs() if inputs is None else inputs
        with torch.no_grad():
            outputs = _as_tensors(model(**{k: _cast(v, model.dtype) for k, v in inputs.items()}))
        assert outputs, "the model returned no tensors"
        return outputs

    def test_save_load_round_trip(self, tmp_path: Path, offline: None) -> None:
        model = self.make_model()
        model.save_pretrained(tmp_path)
        names = sorted(p.name for p in tmp_path.iterdir())
        assert "config.json" in names and WEIGHTS_NAME in names, names
        assert not [n for n in names if n.endswith(PICKLE_SUFFIXES)], f"pickle files saved: {names}"

        loaded = self.model_class.from_pretrained(tmp_path)
        assert type(loaded) is self.model_class
        assert not loaded.training, "from_pretrained must return a model in eval mode"
        assert _public_config(loaded) == _public_config(model)
        expected, state = model.state_dict(), loaded.state_dict()
        assert expected.keys() == state.keys()
        for key in expected:
            assert torch.equal(expected[key], state[key]), key
        # Same weights, but safetensors memory may be aligned differently, which can change BLAS summation order.
        for a, b in zip(self.run(model), self.run(loaded), strict=True):
            torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)

    def test_config_holds_init_arguments(self) -> None:
        model = self.make_model()
        for key, value in self.init_kwargs().items():
            stored = model.config[key]
            assert (list(stored) if isinstance(stored, (list, tuple)) else stored) == (
                list(value) if isinstance(value, (list, tuple)) else value
            ), key

    def test_deterministic(self) -> None:
        model = self.make_model()
        first, second = self.run(model), self.run(model)
        for a, b in zip(first, second, strict=True):
            assert torch.equal(a, b)
        # Same seed, same weights: models are reproducible from a seed.
        for a, b in zip(first, self.run(self.make_model()), strict=True):
            assert torch.equal(a, b)

    def test_outputs_finite(self) -> None:
        for out in self.run(self.make_model()):
            assert torch.isfinite(out).all()

    def test_bfloat16(self) -> None:
        model = self.make_model()
        reference = self.run(model)
        model = model.to(torch.bfloat16)
        assert all(p.dtype == torch.bfloat16 for p in model.parameters())
        assert model.dtype == torch.bfloat16
        for ref, out in zip(reference, self.run(model), strict=True):
            assert out.dtype == torch.bfloat16 and out.shape == ref.shape
            scale = ref.abs().max().clamp_min(1e-3)
            assert (out.float() - ref).abs().max() <= self.bf16_relative_tolerance * scale

    def test_torch_dtype_on_load(self, tmp_path: Path, offline: None) -> None:
        self.make_model().save_pretrained(tmp_path)
        loaded = self.model_class.from_pretrained(tmp_path, torch_dtype=torch.bfloat16)
        assert all(p.dtype == torch.bfloat16 for p in loaded.parameters())
        assert all(out.dtype == torch.bfloat16 for out in self.run(loaded))

    def test_dtype_move_round_trip(self) -> None:
        model = self.make_model()
        reference = self.run(model)
        double = model.to(torch.float64)
        assert model.dtype == torch.float64 and all(p.dtype == torch.float64 for p in double.parameters())
        for ref, out in zip(reference, self.run(double), strict=True):
            assert out.dtype == torch.float64
            torch.testing.assert_close(out.float(), ref, rtol=1e-4, atol=1e-5)
        # float32 -> float64 -> float32 is exact: the same weights, hence the same outputs.
        back = double.to(torch.float32)
        assert back.dtype == torch.float32
        for ref, out in zip(reference, self.run(back), strict=True):
            torch.testing.assert_close(out, ref, rtol=1e-6, atol=1e-7)

    def test_meta_device(self) -> None:
        # The meta device runs shapes only: every parameter moves, and the forward needs no real data (no .item(),
        # no CPU tensor created on the way), which is what a GPU move needs too.
        model = self.make_model()
        reference = self.run(model)
        moved = model.to("meta")
        assert moved.device.type == "meta" and all(p.device.type == "meta" for p in moved.parameters())
        inputs = {k: _to_device(v, "meta") for k, v in self.inputs().items()}  # lists of styles too
        for ref, out in zip(reference, self.run(moved, inputs), strict=True):
            assert out.device.type == "meta" and out.shape == ref.shape and out.dtype == ref.dtype

    @pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
    def test_cuda_move(self) -> None:
        model = self.make_model()
        reference = self.run(model)
        moved = model.to("cuda")
        assert moved.device.type == "cuda"
        inputs = {k: _to_device(v, "cuda") for k, v in self.inputs().items()}
        for ref, out in zip(reference, self.run(moved, inputs), strict=True):
            assert out.device.type == "cuda"
            torch.testing.assert_close(out.cpu(), ref, rtol=1e-3, atol=1e-4)
