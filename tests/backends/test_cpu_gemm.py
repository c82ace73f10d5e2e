"""oneDNN float32 linear layers: same products as float64 numpy to float32 accuracy, and
every other property of ``nn.Linear`` kept (hooks, deep copies, state dicts, autograd)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from quantfid.backends import cpu_gemm
from quantfid.backends.cpu_gemm import OneDNNLinear, onednn_works, use_onednn


def _mlp(seed: int = 0, dtype: torch.dtype = torch.float32) -> torch.nn.Sequential:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.ReLU(),
                               torch.nn.Linear(96, 32, bias=False)).to(dtype)


def _numpy_mlp(m: torch.nn.Sequential, x: np.ndarray) -> np.ndarray:
    w0, b0 = (m[0].weight.detach().double().numpy(), m[0].bias.detach().double().numpy())
    w1 = m[2].weight.detach().double().numpy()
    h = np.maximum(x @ w0.T + b0, 0.0)
    return h @ w1.T


@pytest.fixture(autouse=True)
def _fresh_check(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(cpu_gemm.ENV, raising=False)
    onednn_works.cache_clear()
    yield
    onednn_works.cache_clear()


def test_onednn_is_used_and_matches_float64() -> None:
    assert onednn_works(), "torch ships oneDNN on x86: the fast path must be active here"
    m = _mlp()
    x = torch.randn(3, 17, 64, generator=torch.Generator().manual_seed(1))
    assert use_onednn(m) == 2
    assert all(type(m[i]) is OneDNNLinear and isinstance(m[i], torch.nn.Linear) for i in (0, 2))
    with torch.inference_mode():
        got = m(x).double().numpy()
    want = _numpy_mlp(m, x.double().numpy())
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
    assert use_onednn(m) == 2  # idempotent


def test_same_values_as_torch_linear_to_float32_accuracy() -> None:
    a, b = _mlp(), _mlp()
    use_onednn(b)
    x = torch.randn(40, 64, generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        ya, yb = a(x), b(x)
    assert torch.allclose(ya, yb, rtol=1e-5, atol=1e-6)
    assert a.state_dict().keys() == b.state_dict().keys()


def test_hooks_deepcopy_and_in_place_weights() -> None:
    m = _mlp()
    use_onednn(m)
    seen: list[tuple[int, ...]] = []
    m[0].register_forward_pre_hook(lambda mod, args: (args[0] * 0.0,))
    m[2].register_forward_hook(lambda mod, args, y: seen.append(tuple(y.shape)))
    x = torch.ones(5, 64)
    with torch.inference_mode():
        y = m(x)
    relu_bias = torch.relu(m[0].bias.detach())
    want = (relu_bias @ m[2].weight.detach().T).expand(5, 32)  # the pre-hook zeroed x
    assert torch.allclose(y, want, rtol=1e-5, atol=1e-6)
    assert seen == [(5, 32)]
    twin = copy.deepcopy(m)
    assert type(twin[0]) is OneDNNLinear
    with torch.no_grad():
        twin[2].weight.mul_(2.0)  # rewritten in place: the next call must see it
    with torch.inference_mode():
        assert torch.allclose(twin(x), 2.0 * y, rtol=1e-5, atol=1e-6)


def test_autograd_and_other_dtypes_fall_back() -> None:
    m = _mlp()
    use_onednn(m)
    x = torch.randn(4, 64, requires_grad=True)
    m(x).sum().backward()  # the oneDNN op has no backward: training falls back
    assert x.grad is not None and m[0].weight.grad is not None
    half = _mlp(dtype=torch.bfloat16)
    assert use_onednn(half) == 0
    assert type(half[0]) is torch.nn.Linear


def test_env_switch_keeps_torch_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(cpu_gemm.ENV, "default")
    onednn_works.cache_clear()
    m = _mlp()
    assert use_onednn(m) == 0
    assert type(m[0]) is torch.nn.Linear


def test_torch_default_product_is_another_unit_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    from quantfid.backends.base import Identity
    from quantfid.models import ModelRef, parse_spec

    spec = parse_spec("embedded", role="reference")
    cpu = ModelRef(spec, "c0ffee", Identity("hf", "float32", "cpu", "ggml-cpu"))
    remote = ModelRef(spec, "c0ffee", Identity("http", "native", "remote", "native"))
    fast_cpu, fast_remote = cpu.key, remote.key
    monkeypatch.setenv(cpu_gemm.ENV, "default")
    onednn_works.cache_clear()
    assert cpu.key != fast_cpu          # a study is recomputed, not mixed, across products
    assert remote.key == fast_remote    # servers do not run torch's product
