"""Float32 linear layers on the CPU through oneDNN instead of torch's default BLAS.

torch's CPU ``nn.Linear`` (``addmm``) calls MKL for float32; oneDNN (also shipped in torch,
used by torch for bf16/fp16 products) picks its kernels by instruction set, not vendor. On a
2-core AMD EPYC (Zen 4, AVX-512) the shapes of a 135M-parameter model run 2.1-2.4x faster
through oneDNN (consistent with MKL not using AVX-512 on AMD); ``benchmarks/bench_study.py``
measures the whole study both ways in one run. Not measured on Intel CPUs, where MKL uses
AVX-512 and the two should be closer.

Numerics: both are float32 products with float32 accumulation (torch's oneDNN
``fp32_precision`` at its default: no bf16/tf32 down-conversion, which the start-up check
would catch and fall back from); they differ only in the order of the sums, by a
few ulp (max |error| against a float64 product 2.2e-6 vs 1.2e-6 on outputs of size ~3). On
the machine above oneDNN's row results are the same bits whatever the number of rows in the
product and whatever the thread count (MKL's depend on the row count): a row's product does
not depend on what it is batched with.

:func:`use_onednn` swaps the class of every float32 ``nn.Linear`` on the CPU for
:class:`OneDNNLinear` (a subclass: ``isinstance`` checks, hooks, state dicts and deep copies
behave as before; weights are read at every call, so rewriting them in place is seen).
Set ``QUANTFID_CPU_GEMM=default`` to keep torch's own path.
"""

from __future__ import annotations

import functools
import os

import torch

ENV = "QUANTFID_CPU_GEMM"


def _op() -> object | None:
    if not torch.backends.mkldnn.is_available():
        return None
    return getattr(torch.ops.mkldnn, "_linear_pointwise", None)


class OneDNNLinear(torch.nn.Linear):
    """``nn.Linear`` whose float32 CPU product runs through oneDNN (see the module docstring);
    anything else (empty, other dtype, other device, autograd) goes to ``nn.Linear``."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight
        if (x.device.type != "cpu" or x.dtype != torch.float32 or w.dtype != torch.float32
                or x.numel() == 0 or (torch.is_grad_enabled() and w.requires_grad)):
            return super().forward(x)
        return torch.ops.mkldnn._linear_pointwise(x.contiguous(), w, self.bias,  # (..., out)
                                                  "none", [], "")


@functools.lru_cache(maxsize=1)
def onednn_works() -> bool:
    """Whether this torch has the oneDNN op and it agrees with ``nn.Linear`` (float32,
    relative 1e-5) on a random product: checked once per process."""
    if os.environ.get(ENV, "onednn") == "default" or _op() is None:
        return False
    gen = torch.Generator().manual_seed(0)
    lin = torch.nn.Linear(64, 48, bias=True)
    with torch.no_grad():
        lin.weight.copy_(torch.randn(48, 64, generator=gen))
        lin.bias.copy_(torch.randn(48, generator=gen))
    x = torch.randn(3, 5, 64, generator=gen)
    try:
        with torch.inference_mode():
            want = lin(x)
            lin.__class__ = OneDNNLinear
            got = lin(x)
    except RuntimeError:
        return False
    return bool(torch.allclose(got, want, rtol=1e-5, atol=1e-5))


def product() -> str:
    """Which float32 CPU product this process uses: ``onednn`` or ``torch-default``."""
    return "onednn" if onednn_works() else "torch-default"


def use_onednn(module: torch.nn.Module) -> int:
    """Route ``module``'s float32 CPU linear layers through oneDNN (idempotent); returns how
    many layers use it. A no-op where oneDNN is missing, disabled or fails its check."""
    if not onednn_works():
        return 0
    n = 0
    for mod in module.modules():
        if type(mod) is torch.nn.Linear and mod.weight.device.type == "cpu" \
                and mod.weight.dtype == torch.float32:
            mod.__class__ = OneDNNLinear
        n += isinstance(mod, OneDNNLinear)
    return n
