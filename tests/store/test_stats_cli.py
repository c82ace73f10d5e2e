"""`quantfid stats`: arrays, safetensors, llama.cpp kld-base files, JSON keys, clear errors."""

from __future__ import annotations

import json
import lzma
from pathlib import Path

import numpy as np
import pytest

from quantfid.cli import main
from quantfid.metrics.summary import summarize
from quantfid.metrics.token import token_metrics
from quantfid.metrics.types import STATS_KEYS
from quantfid.store.llamacpp import KldBase

FIX = Path(__file__).parent / "fixtures"


def quant_logits(kb: KldBase) -> np.ndarray:
    """The quant's logits of fixtures/README.md (exact where llama.cpp reads them)."""
    z = np.load(FIX / "c16_quant_sparse.npz")
    out = np.repeat(z["fill"][:, None], kb.n_vocab, axis=1)
    offs = np.concatenate([[0], np.cumsum(z["counts"])])
    for r in range(len(z["counts"])):
        out[r, z["ids"][offs[r]:offs[r + 1]].astype(np.int64)] = z["logits"][offs[r]:offs[r + 1]]
    return out


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> dict[str, object]:
    assert main(["stats", *argv, "--json", "--n-boot", "20"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(STATS_KEYS) <= set(out)
    return out


@pytest.fixture()
def arrays(tmp_path: Path) -> tuple[Path, Path, Path, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(30, 50)).astype(np.float32) * 2
    q = ref + rng.normal(size=ref.shape).astype(np.float32) * 0.3
    t = rng.integers(0, 50, 30)
    for name, a in (("r", ref), ("q", q), ("t", t)):
        np.save(tmp_path / f"{name}.npy", a)
    return tmp_path / "r.npy", tmp_path / "q.npy", tmp_path / "t.npy", ref, q, t


def test_npy_json_equals_library(capsys: pytest.CaptureFixture[str], arrays: tuple) -> None:
    r, q, t, ref, qa, ta = arrays
    out = run_json(capsys, "--ref", str(r), "--quant", str(q), "--targets", str(t))
    want = summarize(token_metrics(ref, qa, ta), n_boot=20, rng=np.random.default_rng(0)).to_json()
    for k in STATS_KEYS:
        assert out[k] == pytest.approx(want[k]), k
    assert out["n_tokens"] == 30 and out["ppl_ref"] is not None


def test_without_targets_nll_keys_are_null(capsys: pytest.CaptureFixture[str], arrays: tuple) -> None:
    r, q, *_ = arrays
    out = run_json(capsys, "--ref", str(r), "--quant", str(q))
    for k in ("ppl_q", "ppl_ref", "ln_ppl_ratio", "ppl_ratio", "ppl_diff", "dp_mean", "rms_dp"):
        assert out[k] is None, k
    assert out["kld_mean"] is not None


def test_safetensors_and_table(capsys: pytest.CaptureFixture[str], arrays: tuple,
                               tmp_path: Path) -> None:
    from safetensors.numpy import save_file

    _, _, _, ref, q, t = arrays
    save_file({"logits": ref}, str(tmp_path / "r.safetensors"))
    save_file({"logits": q, "other": q[:2]}, str(tmp_path / "q.safetensors"))
    save_file({"targets": t}, str(tmp_path / "t.safetensors"))
    argv = ["--ref", str(tmp_path / "r.safetensors"), "--quant", str(tmp_path / "q.safetensors"),
            "--targets", str(tmp_path / "t.safetensors")]
    js = run_json(capsys, *argv)
    assert js["kld_mean"] == pytest.approx(token_metrics(ref, q).kld.mean())
    assert main(["stats", *argv]) == 0
    text = capsys.readouterr().out
    assert "kld_mean" in text and "±" in text and "ppl_ratio" in text


def test_kld_base_alone_prints_reference_ppl(capsys: pytest.CaptureFixture[str],
                                             tmp_path: Path) -> None:
    p = tmp_path / "base.kld"
    p.write_bytes(lzma.decompress((FIX / "c16_base.kld.xz").read_bytes()))
    out = run_json(capsys, "--ref", str(p))
    assert out["n_tokens"] == 14
    assert out["ppl_ref"] == pytest.approx(KldBase(p).ppl_base()[0], rel=1e-12)
    assert out["kld_mean"] is None


def test_kld_base_with_quant_matches_llamacpp(capsys: pytest.CaptureFixture[str],
                                              tmp_path: Path) -> None:
    p = tmp_path / "base.kld"
    p.write_bytes(lzma.decompress((FIX / "c16_base.kld.xz").read_bytes()))
    kb = KldBase(p)
    np.save(tmp_path / "q.npy", quant_logits(kb))
    out = run_json(capsys, "--ref", str(p), "--quant", str(tmp_path / "q.npy"))
    # llama-perplexity's running line after chunk 2 (fixtures/c16_kld_run.out)
    assert out["kld_mean"] == pytest.approx(0.32672, abs=5e-6)
    assert out["kld_mean_se"] == pytest.approx(0.05394, abs=5e-6)
    assert out["ln_ppl_ratio"] == pytest.approx(-0.15837, abs=5e-6)
    assert out["same_top1"] == pytest.approx(0.5, abs=1e-12)
    assert out["rms_dp"] == pytest.approx(0.12242, abs=5e-6)
    assert out["rkld_mean"] is None and out["jsd_mean"] is None


def test_errors_exit_2(capsys: pytest.CaptureFixture[str], arrays: tuple, tmp_path: Path) -> None:
    r, q, _, _, qa, _ = arrays
    assert main(["stats", "--ref", str(tmp_path / "nope.npy"), "--quant", str(q)]) == 2
    assert "no such file" in capsys.readouterr().err
    np.save(tmp_path / "short.npy", qa[:, :49])
    assert main(["stats", "--ref", str(r), "--quant", str(tmp_path / "short.npy")]) == 2
    assert "shape" in capsys.readouterr().err
    bad = qa.copy()
    bad[7, 3] = np.nan
    np.save(tmp_path / "nan.npy", bad)
    assert main(["stats", "--ref", str(r), "--quant", str(tmp_path / "nan.npy")]) == 2
    err = capsys.readouterr().err
    assert "non-finite" in err and "7" in err
    np.save(tmp_path / "t2.npy", np.zeros(29, np.int64))
    assert main(["stats", "--ref", str(r), "--quant", str(q), "--targets", str(tmp_path / "t2.npy")]) == 2
    assert "targets" in capsys.readouterr().err
    (tmp_path / "x.txt").write_text("hello")
    assert main(["stats", "--ref", str(tmp_path / "x.txt"), "--quant", str(q)]) == 2
    assert ".npy or .safetensors" in capsys.readouterr().err
    assert main(["stats", "--ref", str(r)]) == 2
    assert "--quant is required" in capsys.readouterr().err


def test_store_directory_as_ref(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from quantfid.metrics.types import TokenMetrics
    from quantfid.store.compact import CompactStoreWriter
    from quantfid.store.full import FullStoreWriter

    rng = np.random.default_rng(6)
    ref = rng.normal(size=(2, 7, 40)).astype(np.float32) * 2
    q = (ref + rng.normal(size=ref.shape) * 0.2).astype(np.float32)
    toks = rng.integers(0, 40, size=(2, 16))
    np.save(tmp_path / "q.npy", q.reshape(-1, 40))
    for name, cls in (("full", FullStoreWriter), ("compact", CompactStoreWriter)):
        w = cls(tmp_path / name, model_id="m", tokenizer_id="t", vocab_size=40, ctx=16)
        for i in range(2):
            w.append(ref[i], toks[i])
        st = w.close()
        out = run_json(capsys, "--ref", str(tmp_path / name), "--quant", str(tmp_path / "q.npy"))
        tm = TokenMetrics.concat([st.metrics_against(i, q[i]) for i in range(2)])
        want = summarize(tm, np.repeat(np.arange(2), 7), n_boot=20,
                         rng=np.random.default_rng(0)).to_json()
        for k in STATS_KEYS:
            assert out[k] == pytest.approx(want[k]), (name, k)
        assert out["n_tokens"] == 14 and out["ppl_ref"] is not None
    np.save(tmp_path / "q_short.npy", q.reshape(-1, 40)[:13])
    assert main(["stats", "--ref", str(tmp_path / "full"), "--quant",
                 str(tmp_path / "q_short.npy")]) == 2
    assert "expected shape (14, 40)" in capsys.readouterr().err
