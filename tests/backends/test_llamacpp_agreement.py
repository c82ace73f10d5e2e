"""ggml-cpu numerics against llama.cpp itself on the embedded model: Q8_0, Q6_K and Q4_K_M
recipes measured in torch under ggml-cpu give the mean KLD llama.cpp gives its own file of
the same preset (ratio 0.95-1.05), with the same per-tensor types; ``weights`` numerics is
today's weight-only forward, bit for bit.

The emulation agrees in distribution, not token by token: activation rounding is
discontinuous, so the two runtimes' different float summation orders flip a few roundings
that grow into an independent draw of the rounding noise (docs/numerics.md). The mean over
N_CHUNKS x 63 scored tokens is what is compared."""

from __future__ import annotations

import functools
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from quantfid.backends import llamacpp

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not llamacpp.available(), reason="llama-cpp-python is not installed")]
N_CTX = 128
N_CHUNKS = 2


@pytest.fixture(scope="module")
def sides(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    from quantfid import corpus, embedded
    from quantfid.backends.hf import load_hf
    from quantfid.quantize import agreement

    lm = load_hf("embedded", device="cpu", role="reference")
    toks = corpus.tokenize(corpus.builtin("prose").text, lm.tokenizer, None)
    win = corpus.make_windows(toks, N_CTX, None, "llamacpp", N_CHUNKS)
    s = agreement.prepare(lm.module, win, tmp_path_factory.mktemp("agree"),
                          metadata_gguf=embedded.gguf_path(), weights=False, threads=1)
    yield s
    s.reference_gguf.unlink(missing_ok=True)


def test_reference_floor(sides: Any) -> None:
    """The torch reference under ggml-cpu (f16 K/V) is llama.cpp's F32 reference to ~1e-7
    nats; under weights numerics (float32 K/V) it is measurably further away."""
    from quantfid.metrics import token_metrics
    from quantfid.quantize import agreement
    from quantfid.quantize.numerics import apply_numerics

    assert sides.ref_kld < 1e-6
    score = functools.partial(agreement.module_score_windows, sides.module)
    with apply_numerics(sides.module, None, "weights"):
        plain = agreement.keep_reference(score, sides.windows)
    far = float(torch.cat([torch.from_numpy(token_metrics(a, b, extras=False).kld)
                           for a, b in zip(sides.llamacpp_ref, plain, strict=True)]).mean())
    assert far > 3 * sides.ref_kld


@pytest.mark.parametrize("name", ["Q8_0", "Q6_K", "Q4_K_M"])
def test_ggml_cpu_matches_llamacpp(sides: Any, name: str) -> None:
    from quantfid.quantize import agreement, get_recipe, model_shape

    row = agreement.measure_preset(sides, get_recipe(name), model_shape(sides.module))
    assert not row.type_diff, row.type_diff[:5]
    assert 0.95 <= row.ratio <= 1.05, row


def test_weights_numerics_is_todays_forward(sides: Any) -> None:
    from quantfid.quantize import get_recipe, quantize_model
    from quantfid.quantize.numerics import apply_numerics

    rep = quantize_model(sides.work, get_recipe("Q8_0"), source=sides.module, progress=False)
    ids = torch.from_numpy(sides.windows.ids[:1])
    with torch.inference_mode():
        today = sides.work(input_ids=ids, use_cache=False).logits
        with apply_numerics(sides.work, rep.types, "weights") as h:
            assert not h.types
            same = sides.work(input_ids=ids, use_cache=False).logits
        with apply_numerics(sides.work, rep.types, "ggml-cpu"):
            other = sides.work(input_ids=ids, use_cache=False).logits
    assert torch.equal(today, same)
    assert not torch.equal(today, other)


