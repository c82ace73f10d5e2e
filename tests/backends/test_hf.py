"""The transformers backend against a plain ``model(input_ids)`` forward pass."""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from quantfid.backends.hf import (
    HFBackend,
    adds_bos,
    check_same_tokenizer,
    hash_dir,
    load_hf,
    tokenizer_id,
)
from quantfid.errors import MismatchError, QuantfidError
from quantfid.reducers import FullRows


def _logprobs(backend: HFBackend, ids: np.ndarray, start: int = 0, stop: int | None = None,
              batch_size: int = 1) -> torch.Tensor:
    """(n, stop - start, V) float32 log-probs, reassembled from the backend's chunks."""
    stop = ids.shape[-1] if stop is None else stop
    rows: dict[int, list[torch.Tensor]] = {}
    for w, lp in backend.score_windows(ids, start, stop, FullRows(), batch_size=batch_size):
        rows.setdefault(w, []).append(lp)
    return torch.stack([torch.cat(rows[w]) for w in sorted(rows)])


@pytest.fixture(scope="module")
def backend(tiny_dir: Path) -> HFBackend:
    return HFBackend.load(str(tiny_dir), role="reference")


def _windows(backend: HFBackend, n: int = 3, n_ctx: int = 32) -> np.ndarray:
    rng = np.random.default_rng(1)
    return rng.integers(0, backend.vocab_size(), size=(n, n_ctx))


def test_logprobs_equal_plain_forward(backend: HFBackend) -> None:
    ids = _windows(backend)
    with torch.no_grad():
        logits = backend.module(torch.from_numpy(ids)).logits.double()
    expected = torch.log_softmax(logits, dim=-1)[:, 16:31]
    got = _logprobs(backend, ids, 16, 31, batch_size=2)
    assert got.dtype == torch.float32 and got.shape == (3, 15, backend.vocab_size())
    assert torch.allclose(got.double(), expected, atol=2e-5)
    # every row is a normalised distribution
    assert torch.allclose(torch.logsumexp(got.double(), -1), torch.zeros(3, 15, dtype=torch.float64), atol=1e-5)


def test_batching_and_chunking_do_not_change_results(tiny_dir: Path,
                                                     backend: HFBackend) -> None:
    ids = _windows(backend, n=4)
    one = _logprobs(backend, ids, batch_size=1)
    four = _logprobs(backend, ids, batch_size=4)
    assert one.shape == (4, 32, backend.vocab_size())
    assert torch.allclose(one, four, atol=1e-5)
    for chunk in (1, 5, 31):
        b = HFBackend(backend.loaded, chunk=chunk)
        assert b.head.chunked
        got = list(b.score_windows(ids, 0, 32, FullRows(), batch_size=3))
        assert max(lp.shape[0] for _, lp in got) == min(chunk, 32)
        # the same computation, split: only the matmul's blocking (rounding) may differ
        assert torch.allclose(_logprobs(b, ids, batch_size=1), one, atol=1e-5, rtol=0)


def test_unknown_head_falls_back_to_the_module_forward(backend: HFBackend) -> None:
    """A head this backend does not know (here: a post-processing the Llama forward does not
    apply) fails the self-check; the module's own forward is used, with the same results."""
    import copy

    module = copy.deepcopy(backend.module)
    module.config.final_logit_softcapping = 1.0  # not applied by LlamaForCausalLM.forward
    b = HFBackend(dataclasses.replace(backend.loaded, module=module), chunk=7)
    assert not b.head.chunked
    ids = _windows(backend, n=2)
    assert torch.allclose(_logprobs(b, ids, 3, 30), _logprobs(backend, ids, 3, 30), atol=1e-6)


def test_bad_positions_and_shapes(backend: HFBackend) -> None:
    ids = _windows(backend)
    with pytest.raises(QuantfidError, match="outside"):
        _logprobs(backend, ids, 10, 40)
    with pytest.raises(QuantfidError, match="n_ctx"):
        _logprobs(backend, ids[0])


def test_tokenizer_identity(backend: HFBackend, tiny_dir: Path, tmp_path: Path) -> None:
    from quantfid.backends.tiny import make_tiny_tokenizer

    again = HFBackend.load(str(tiny_dir))
    assert again.tokenizer_id() == backend.tokenizer_id()
    other = make_tiny_tokenizer(vocab_size=320)
    assert tokenizer_id(other) != backend.tokenizer_id()
    check_same_tokenizer(backend.tokenizer_id(), "ref", again.tokenizer_id(), "q")
    with pytest.raises(MismatchError, match=r"'q'.*differs from the reference 'ref'"):
        check_same_tokenizer(backend.tokenizer_id(), "ref", tokenizer_id(other), "q")


def test_bos_detection(backend: HFBackend) -> None:
    from quantfid.backends.tiny import make_tiny_tokenizer

    assert backend.bos_id() is None and not adds_bos(backend.tokenizer)
    with_bos = make_tiny_tokenizer(add_bos=True)
    assert adds_bos(with_bos) and with_bos.bos_token_id == 0
    text = "The assert statement"
    plain = list(backend.tokenize(text))
    assert list(backend.tokenize(text, bos=True)) == [0, *plain]


def test_bfloat16_runs_and_stays_close(tiny_dir: Path, backend: HFBackend) -> None:
    bf = HFBackend.load(str(tiny_dir), dtype="bfloat16")
    assert next(bf.module.parameters()).dtype == torch.bfloat16
    ids = _windows(backend, n=1)
    p = _logprobs(backend, ids).double()
    q = _logprobs(bf, ids)
    assert q.dtype == torch.float32
    kld = (p.exp() * (p - q.double())).sum(-1)
    assert float(kld.mean()) < 0.05


def test_dir_hash_and_load_errors(tiny_dir: Path, tmp_path: Path, backend: HFBackend) -> None:
    assert backend.info.hash == hash_dir(tiny_dir)
    copy = shutil.copytree(tiny_dir, tmp_path / "copy")
    assert hash_dir(copy) == hash_dir(tiny_dir)
    (copy / "config.json").write_text((copy / "config.json").read_text() + " ")
    assert hash_dir(copy) != hash_dir(tiny_dir)
    with pytest.raises(QuantfidError, match="GGUF file not found"):
        load_hf(str(tmp_path / "nope.gguf"))
    (tmp_path / "weights.bin").write_bytes(b"x")
    with pytest.raises(QuantfidError, match=r"not a \.gguf"):
        load_hf(str(tmp_path / "weights.bin"))
    with pytest.raises(QuantfidError, match="unknown dtype"):
        load_hf(str(tiny_dir), dtype="int3")


@pytest.mark.slow
def test_embedded_gguf_loads_and_predicts() -> None:
    from quantfid import embedded

    b = HFBackend.load(str(embedded.gguf_path()), name="smol")
    assert b.info.id == "smol" and b.info.format == "gguf" and b.vocab_size() == 49152
    assert b.bos_id() is None  # the GGUF sets add_bos_token = false
    ids = b.tokenize("The quick brown fox jumps over the lazy dog. " * 8)[:64][None, :]
    lp = _logprobs(b, ids, 32, 63)[0]
    # a real model predicts this repetitive text well: mean NLL of the targets is small
    nll = -lp.gather(-1, torch.from_numpy(ids[0, 33:64])[:, None]).mean()
    assert float(nll) < 1.0
