"""End-to-end `measure` on tiny random local models, checked against a plain torch loop."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from quantfid.cli import main
from quantfid.corpus import builtin
from quantfid.errors import MismatchError, QuantfidError
from quantfid.measure import measure
from quantfid.metrics.types import STATS_KEYS
from quantfid.store.workspace import Workspace

os.environ.setdefault("HF_HUB_OFFLINE", "1")
CTX, CHUNKS = 64, 4


@pytest.fixture(autouse=True, scope="module")
def _one_thread() -> Iterator[None]:
    # tiny models: threading only adds contention on a shared machine
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from quantfid.backends.tiny import make_tiny_llama

    d = tmp_path_factory.mktemp("models")
    return {"ref": make_tiny_llama(d / "ref", seed=0),
            "q": make_tiny_llama(d / "q", seed=1),
            "ref_bos": make_tiny_llama(d / "ref_bos", seed=0, add_bos=True),
            "other_tok": make_tiny_llama(d / "other_tok", seed=0, tokenizer_chars=20_000)}


def _window_logprobs(backend: Any, ids: np.ndarray, start: int, stop: int) -> list[np.ndarray]:
    from quantfid.reducers import FullRows

    rows: dict[int, list[Any]] = {}
    for w, lp in backend.score_windows(ids, start, stop, FullRows()):
        rows.setdefault(w, []).append(lp)
    return [torch.cat(rows[w]).numpy() for w in sorted(rows)]


def _plain_kld(ref_dir: Path, q_dir: Path, ctx: int, chunks: int, first: int) -> dict[str, np.ndarray]:
    """The same measurement written out with transformers and float64 torch, no quantfid."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ref_dir)
    ids = tok(builtin("docs").text, add_special_tokens=True)["input_ids"]  # BOS if the model adds one
    bos = tok.bos_token_id if ids[0] == tok.bos_token_id else None
    out: dict[str, list[float]] = {"kld": [], "nll_ref": [], "same": [], "margin": []}
    models = [AutoModelForCausalLM.from_pretrained(p).eval() for p in (ref_dir, q_dir)]
    for c in range(chunks):
        chunk = list(ids[c * ctx:(c + 1) * ctx])
        x = list(chunk)
        if bos is not None:
            x[0] = bos
        with torch.no_grad():
            lp = [torch.log_softmax(m(torch.tensor([x])).logits[0].double(), -1) for m in models]
        for j in range(first, ctx - 1):
            p, q = lp[0][j], lp[1][j]
            out["kld"].append(float((p.exp() * (p - q)).sum()))
            out["nll_ref"].append(float(-p[chunk[j + 1]]))
            out["same"].append(float(p.argmax() == q.argmax()))
            # the smaller top-1 margin of the two: below ~1e-5 the argmax is rounding's choice
            out["margin"].append(min(float(x.topk(2).values[0] - x.topk(2).values[1])
                                     for x in (p, q)))
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize(("ref_key", "store"), [("ref", "full"), ("ref_bos", "compact")])
def test_measure_matches_plain_loop(models: dict[str, Path], tmp_path: Path, ref_key: str,
                                    store: str) -> None:
    ws = Workspace(tmp_path / "ws")
    (res,) = measure(str(models[ref_key]), [str(models["q"])], "docs", CTX, chunks=CHUNKS,
                     workspace=ws, progress=False, n_boot=50, store=store)
    exp = _plain_kld(models[ref_key], models["q"], CTX, CHUNKS, CTX // 2)
    n = CHUNKS * (CTX - 1 - CTX // 2)
    s = res.stats
    assert s["n_tokens"] == n == len(exp["kld"]) and res.n_windows == CHUNKS
    assert s["ppl_ref"] == pytest.approx(np.exp(exp["nll_ref"].mean()), rel=1e-5)
    tokens = ws.read_table("tokens").to_pydict()
    clear = exp["margin"] > 1e-4  # exact agreement wherever the top-1 is not a near-tie
    assert np.array_equal(np.asarray(tokens["same_top1"])[clear], exp["same"][clear] > 0)
    assert s["same_top1"] == pytest.approx(exp["same"].mean(), abs=(~clear).sum() / n + 1e-12)
    assert len(tokens["kld"]) == n
    if store == "full":  # every log-prob kept: per-token KLD exact to float32 rounding
        assert np.allclose(tokens["kld"], exp["kld"], rtol=1e-5, atol=1e-5)
        assert s["kld_mean"] == pytest.approx(exp["kld"].mean(), rel=1e-5)
    else:  # top-k + tail bucket + tail sample: an estimate per token, close on the mean
        assert s["kld_mean"] == pytest.approx(exp["kld"].mean(), rel=1e-2)
    assert np.allclose(tokens["nll_ref"], exp["nll_ref"], rtol=1e-5, atol=1e-5)
    assert tokens["window"][:3] == [0, 0, 0] and tokens["pos"][0] == CTX // 2
    assert tokens["pos"][-1] == CTX - 2 and set(tokens["model"]) == {"q"}
    (row,) = ws.rows("fidelity")
    for k in ("model", "reference", "corpus", "corpus_hash", "ctx", "scoring", "n_windows",
              *STATS_KEYS, "kld_mean_ci_low", "kld_mean_ci_high", "ln_ppl_ratio_ci_low",
              "ln_ppl_ratio_ci_high"):
        assert k in row, k
    assert row["reference"] == ref_key and row["corpus"] == "docs" and row["ctx"] == CTX
    assert row["kld_mean_ci_low"] <= row["kld_mean"] <= row["kld_mean_ci_high"]


def test_resume_recipes_and_reference_lock(models: dict[str, Path], tmp_path: Path) -> None:
    ws_path = tmp_path / "ws"
    specs = [str(models["q"]), "rtn-w8g32-sym", "rtn-w2g32-asym"]
    first = measure(str(models["ref"]), specs, "docs", CTX, chunks=2, workspace=ws_path,
                    progress=False, n_boot=20)
    assert [r.model for r in first] == ["q", "rtn-w8g32-sym", "rtn-w2g32-asym"]
    assert not any(r.reused for r in first)
    k8, k2 = first[1].stats["kld_mean"], first[2].stats["kld_mean"]
    assert 0 < k8 < k2  # 8-bit RTN drifts less than 2-bit RTN
    ws = Workspace(ws_path, create=False)
    assert ws.reference is not None and ws.reference.id == "ref"
    rec = ws.model("rtn-w2g32-asym")
    assert rec.role == "quant" and rec.format == "recipe" and 2 < (rec.bits_per_weight or 0) < 33
    again = measure(str(models["ref"]), specs, "docs", CTX, chunks=2, workspace=ws_path,
                    progress=False, n_boot=20)
    assert all(r.reused for r in again)
    assert [r.stats["kld_mean"] for r in again] == [r.stats["kld_mean"] for r in first]
    # a changed input (more windows) redoes the unit; the part is replaced
    more = measure(str(models["ref"]), [str(models["q"])], "docs", CTX, chunks=3,
                   workspace=ws_path, progress=False, n_boot=20)
    assert not more[0].reused and more[0].n_windows == 3
    assert len(ws.rows("fidelity")) == 3
    with pytest.raises(MismatchError, match="already has reference"):
        measure(str(models["q"]), [str(models["ref"])], "docs", CTX, chunks=2,
                workspace=ws_path, progress=False)


def test_scoring_all_and_names(models: dict[str, Path]) -> None:
    (res,) = measure(str(models["ref"]), [str(models["q"])], "docs", CTX, chunks=2,
                     scoring="all", names=["mine"], progress=False, n_boot=10)
    assert res.model == "mine" and res.stats["n_tokens"] == 2 * (CTX - 1)
    exp = _plain_kld(models["ref"], models["q"], CTX, 2, 0)
    assert res.stats["kld_mean"] == pytest.approx(exp["kld"].mean(), rel=1e-2)


def test_tokenizer_and_vocab_mismatch(models: dict[str, Path], tmp_path: Path) -> None:
    from quantfid.backends.tiny import make_tiny_llama

    with pytest.raises(MismatchError, match="tokenizer of 'other_tok'"):
        measure(str(models["ref"]), [str(models["other_tok"])], "docs", CTX, chunks=1,
                progress=False)
    small = make_tiny_llama(tmp_path / "small", vocab_size=320)
    with pytest.raises(MismatchError, match="vocabulary of 320"):
        measure(str(models["ref"]), [str(small)], "docs", CTX, chunks=1, progress=False)


def test_stored_references(models: dict[str, Path], tmp_path: Path) -> None:
    """Our store and a llama.cpp kld-base file as --reference give the model run's numbers."""
    from quantfid.backends.hf import HFBackend
    from quantfid.corpus import make_windows
    from quantfid.store.llamacpp import KldBaseWriter

    ws = Workspace(tmp_path / "ws")
    (direct,) = measure(str(models["ref"]), [str(models["q"])], "docs", CTX, chunks=2,
                        workspace=ws, progress=False, n_boot=10)
    (store_dir,) = (ws.path / "arrays" / "reference").iterdir()
    (via_store,) = measure(str(store_dir), [str(models["q"])], None, None, progress=False,
                           n_boot=10)
    assert via_store.reference == "ref" and via_store.corpus == "docs"
    assert via_store.stats["kld_mean"] == pytest.approx(direct.stats["kld_mean"], rel=1e-9)
    with pytest.raises(MismatchError, match="not --ctx 128"):
        measure(str(store_dir), [str(models["q"])], None, 128, progress=False)

    ref = HFBackend.load(str(models["ref"]))
    w = make_windows(ref.tokenize(builtin("docs").text), CTX, ref.bos_id(), max_chunks=2)
    kld_path = tmp_path / "ref.kld"
    writer = KldBaseWriter(kld_path, w.tokens, ref.vocab_size())
    for lp in _window_logprobs(ref, w.ids, w.first, CTX - 1):
        writer.append(lp)
    writer.close()
    (via_kld,) = measure(str(kld_path), [str(models["q"])], None, None, progress=False,
                         n_boot=10)
    assert via_kld.reference == "ref" and via_kld.n_windows == 2
    # llama.cpp's base file keeps log-probs to 16 bits over the top 16 nats
    assert via_kld.stats["kld_mean"] == pytest.approx(direct.stats["kld_mean"], rel=2e-2)
    with pytest.raises(QuantfidError, match="recipes are applied to a reference model"):
        measure(str(kld_path), ["rtn-w8g32-sym"], None, None, progress=False)


def test_cli_json_and_errors(models: dict[str, Path], capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["measure", "--reference", str(models["ref"]), "--quant", str(models["q"]),
               "--corpus", "docs", "--ctx", str(CTX), "--chunks", "1", "--n-boot", "10",
               "--json"])
    assert rc == 0
    out = json.loads(capsys.readouterr().out)
    assert isinstance(out, list) and len(out) == 1 and out[0]["model"] == "q"
    assert all(k in out[0] for k in STATS_KEYS)
    rc = main(["measure", "--reference", str(models["ref"]), "--quant", str(models["q"]),
               "--corpus", "docs", "--ctx", str(CTX), "--chunks", "1", "--n-boot", "10"])
    text = capsys.readouterr().out
    assert rc == 0 and "kld_mean" in text.splitlines()[1] and text.splitlines()[2].startswith("q ")
    assert main(["measure", "--reference", str(models["ref"]), "--quant", str(models["q"]),
                 "--corpus", "no-such-corpus"]) == 2
    assert "neither a built-in" in capsys.readouterr().err
    assert main(["measure", "--quant", "x", "--prompts", "humaneval"]) == 2
    assert "--prompts needs --workspace" in capsys.readouterr().err


@pytest.mark.slow
def test_embedded_model_q4_1_is_nearly_lossless() -> None:
    """The embedded reference is the f32 expansion of a Q4_1 file: Q4_1 of it barely moves."""
    res = measure(None, ["Q4_1", "rtn-w2g128-asym"], "prose", 128, chunks=1, progress=False,
                  n_boot=10)
    q41, q2 = res[0].stats, res[1].stats
    assert res[0].reference == "SmolLM2-135M-Instruct-f32" and q41["n_tokens"] == 63
    assert q41["kld_mean"] < 0.02 and q41["same_top1"] > 0.9
    assert q2["kld_mean"] > 10 * q41["kld_mean"]


def test_pool_records_recipes_without_quantizing(models: dict[str, Path]) -> None:
    from quantfid.models import parse_spec
    from quantfid.pool import ModelPool
    from quantfid.quantize import get_recipe, model_shape

    pool = ModelPool(parse_spec(str(models["ref"]), role="reference"))
    q = pool.ref_of(parse_spec("rtn-w4g32-sym", name="r4"))
    rec = pool.record(q)
    assert rec.id == "r4" and rec.source == "recipe:rtn-w4g32-sym@ref" and rec.format == "recipe"
    shape = model_shape(pool.reference().module)  # type: ignore[attr-defined]
    assert rec.bits_per_weight == pytest.approx(get_recipe("rtn-w4g32-sym").bits_per_weight(shape))
    assert rec.extra["backend"] == "hf" and rec.extra["numerics"] == "weights"
    built = pool.open(q)  # the record equals what quantizing reports
    assert built.info.bits_per_weight == rec.bits_per_weight and built.info.hash == rec.hash
