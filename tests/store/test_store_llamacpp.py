"""llama.cpp kld-base interop, checked against real llama-perplexity runs (see fixtures/README.md)."""
# ruff: noqa: UP031  (printf formats copied from llama-perplexity's output on purpose)

from __future__ import annotations

import lzma
from pathlib import Path

import numpy as np
import pytest

from quantfid.errors import FormatError, MismatchError
from quantfid.metrics.summary import summarize
from quantfid.metrics.types import TokenMetrics
from quantfid.store.llamacpp import (
    HEADER_BYTES,
    KldBase,
    KldBaseWriter,
    LlamaCppAccumulator,
    encode_rows,
    file_size,
    metrics_from_rows,
    row_width,
    scored_per_chunk,
)

FIX = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def c16_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    p = tmp_path_factory.mktemp("kld") / "c16_base.kld"
    p.write_bytes(lzma.decompress((FIX / "c16_base.kld.xz").read_bytes()))
    return p


def quant_logits(kb: KldBase) -> np.ndarray:
    """The quant's logits: exact on every entry llama.cpp reads, the rest filled so that the
    softmax normaliser is preserved (see make_llamacpp_fixtures.py)."""
    z = np.load(FIX / "c16_quant_sparse.npz")
    out = np.repeat(z["fill"][:, None], kb.n_vocab, axis=1)
    offs = np.concatenate([[0], np.cumsum(z["counts"])])
    for r in range(len(z["counts"])):
        sel = slice(offs[r], offs[r + 1])
        out[r, z["ids"][sel].astype(np.int64)] = z["logits"][sel]
    return out.reshape(kb.n_chunk, kb.n_scored, kb.n_vocab)


def chunk_text(i: int, d: dict[str, float]) -> str:
    """One per-chunk line exactly as llama-perplexity prints it."""
    return ("%4d" % i + "    %9.4lf ± %9.4lf" % (d["ppl"], d["ppl_unc"])
            + "    %10.5lf ± %10.5lf" % (d["ln_ratio"], d["ln_ratio_unc"])
            + "    %10.5lf ± %10.5lf" % (d["kld"], d["kld_unc"])
            + "    %6.3lf ± %6.3lf %%" % (d["rms_dp_pct"], d["rms_dp_unc_pct"])
            + "    %6.3lf ± %6.3lf %%" % (d["same_top_pct"], d["same_top_unc_pct"]))


def final_text(f: dict[str, float]) -> list[str]:
    """The final statistics lines, with llama-perplexity's formats."""
    lines = [
        "Mean PPL(Q)                   : %10.6lf ± %10.6lf" % (f["ppl_q"], f["ppl_q_unc"]),
        "Mean PPL(base)                : %10.6lf ± %10.6lf" % (f["ppl_base"], f["ppl_base_unc"]),
        "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2lf%%" % f["cor_pct"],
        "Mean ln(PPL(Q)/PPL(base))     : %10.6lf ± %10.6lf" % (f["ln_ratio"], f["ln_ratio_unc"]),
        "Mean PPL(Q)/PPL(base)         : %10.6lf ± %10.6lf" % (f["ratio"], f["ratio_unc"]),
        "Mean PPL(Q)-PPL(base)         : %10.6lf ± %10.6lf" % (f["diff"], f["diff_unc"]),
        "Mean    KLD: %10.6lf ± %10.6lf" % (f["kld_mean"], f["kld_mean_unc"]),
        "Maximum KLD: %10.6f" % f["kld_max"],
        "Median  KLD: %10.6f" % f["kld_median"],
        "Minimum KLD: %10.6f" % f["kld_min"],
        "Mean    Δp: %6.3lf ± %5.3lf %%" % (f["dp_mean_pct"], f["dp_mean_unc_pct"]),
        "Maximum Δp: %6.3lf%%" % f["dp_max_pct"],
        "Median  Δp: %6.3lf%%" % f["dp_median_pct"],
        "Minimum Δp: %6.3lf%%" % f["dp_min_pct"],
        "RMS Δp    : %6.3lf ± %5.3lf %%" % (f["rms_dp_pct"], f["rms_dp_unc_pct"]),
        "Same top p: %6.3lf ± %5.3lf %%" % (f["same_top_pct"], f["same_top_unc_pct"]),
    ]
    for label, name in (("99.9%", "99_9"), ("99.0%", "99"), ("95.0%", "95"), ("90.0%", "90"),
                        ("10.0%", "10"), (" 5.0%", "5"), (" 1.0%", "1"), (" 0.1%", "0_1")):
        lines.append(f"{label}   KLD: " + "%10.6f" % f[f"kld_p{name}"])
        lines.append(f"{label}   Δp: " + "%6.3lf%%" % f[f"dp_p{name}_pct"])
    for label, name in (("75.0%", "75"), ("25.0%", "25")):
        lines.append(f"{label}   Δp: " + "%6.3lf%%" % f[f"dp_p{name}_pct"])
    return lines


def pertoken_metrics(per: np.ndarray) -> TokenMetrics:
    """llama.cpp's own per-token values (nll, nll_base, same, kld, dp) as TokenMetrics."""
    p = per.reshape(-1, 5).astype(np.float64)
    return TokenMetrics(kld=p[:, 3], same_top1=p[:, 2] > 0, ref_top1_prob=np.full(len(p), np.nan),
                        nll_q=p[:, 0], nll_ref=p[:, 1], dp=p[:, 4])


def test_reader_parses_real_file(c16_path: Path) -> None:
    kb = KldBase(c16_path)
    assert (kb.n_ctx, kb.n_vocab, kb.n_chunk) == (16, 49152, 2)
    assert kb.n_scored == scored_per_chunk(16) == 7 and kb.nv == row_width(49152) == 49156
    assert c16_path.stat().st_size == file_size(16, 49152, 2)
    # SmolLM2's GGUF sets add_bos_token = false: the ids are the plain tokenized text
    assert kb.tokens.min() >= 0 and kb.tokens.max() < kb.n_vocab
    lp = kb.logp(1)
    assert lp.shape == (7, 49152)
    # a log-softmax, cut 16 nats below the top: normalised up to the 16-bit step and the cut
    mass = np.exp(lp.astype(np.float64)).sum(axis=1) - 49152 * np.exp(lp.min(axis=1))
    assert np.all(np.abs(mass - 1) < 0.02)
    assert np.all(lp.max(axis=1) - lp.min(axis=1) <= 16.0 + 1e-4)


def test_ppl_base_from_file_matches_base_run(c16_path: Path) -> None:
    # the base run prints PPL from exact logits ("[2]60.7359"); the file holds the log-probs
    # to 16 bits (step <= 16/65535 nats, rounding error <= half of it per token)
    printed = float((FIX / "c16_base_run.out").read_text().strip().rstrip(",").split("]")[-1])
    ppl, unc = KldBase(c16_path).ppl_base()
    assert abs(np.log(ppl / printed)) <= 0.5 * 16 / 65535 + 1e-6
    assert unc > 0


def test_writer_reproduces_rows_bit_for_bit(c16_path: Path) -> None:
    kb = KldBase(c16_path)
    z = np.load(FIX / "c16_base_logits_rows.npz")
    for (chunk, row), logits in zip(z["where"], z["logits"], strict=True):
        ours = encode_rows(logits[None, :])
        assert ours.tobytes() == np.asarray(kb.rows[chunk, row : row + 1]).tobytes()


def test_writer_header_and_file_layout(c16_path: Path, tmp_path: Path) -> None:
    kb = KldBase(c16_path)
    out = tmp_path / "ours.kld"
    with KldBaseWriter(out, np.asarray(kb.tokens), kb.n_vocab) as w:
        for c in range(kb.n_chunk):
            w.append(kb.logp(c))
    real = c16_path.read_bytes()
    mine = out.read_bytes()
    n_head = HEADER_BYTES + 4 * kb.n_ctx * kb.n_chunk
    assert mine[:n_head] == real[:n_head]
    assert len(mine) == len(real)
    # re-encoding the dequantized log-probs gives back the same 16-bit codes
    back = KldBase(out)
    assert np.array_equal(np.asarray(back.rows)[..., 4:], np.asarray(kb.rows)[..., 4:])


def test_per_token_values_equal_llamacpp(c16_path: Path) -> None:
    kb = KldBase(c16_path)
    q = quant_logits(kb)
    per = np.load(FIX / "c16_pertoken.npy")  # llama.cpp's own: nll, nll_base, same, kld, dp
    for c in range(kb.n_chunk):
        tm = kb.metrics_against(c, q[c])
        np.testing.assert_array_equal(tm.nll_q.astype(np.float32), per[c, :, 0])
        np.testing.assert_array_equal(tm.nll_ref.astype(np.float32), per[c, :, 1])
        np.testing.assert_array_equal(tm.same_top1, per[c, :, 2] > 0)
        np.testing.assert_array_equal(tm.kld.astype(np.float32), per[c, :, 3])
        np.testing.assert_array_equal(tm.dp.astype(np.float32), per[c, :, 4])


def test_chunk_lines_equal_printed(c16_path: Path) -> None:
    kb = KldBase(c16_path)
    q = quant_logits(kb)
    printed = (FIX / "c16_kld_run.out").read_text().splitlines()
    acc = LlamaCppAccumulator()
    for c in range(kb.n_chunk):
        acc.add(kb.metrics_against(c, q[c]))
        assert chunk_text(c + 1, acc.chunk_line()) in printed


def test_final_statistics_equal_printed() -> None:
    per = np.load(FIX / "c128_pertoken.npy")
    printed = (FIX / "c128_kld_run.out").read_text().splitlines()
    acc = LlamaCppAccumulator()
    for c in range(per.shape[0]):
        acc.add(pertoken_metrics(per[c]))
        assert chunk_text(c + 1, acc.chunk_line()) in printed
    for line in final_text(acc.final()):
        assert line in printed, line


def test_summarize_matches_printed_precision() -> None:
    """The metrics engine's summary of llama.cpp's per-token values agrees with the printed
    statistics to the printed precision (one unit in the last printed digit)."""
    per = np.load(FIX / "c128_pertoken.npy")
    js = summarize(pertoken_metrics(per), np.repeat(np.arange(2), per.shape[1]), n_boot=10,
                   rng=np.random.default_rng(0)).to_json()
    expect = {"ppl_q": (46.087817, 1e-6), "ppl_ref": (41.848704, 1e-6),
              "ln_ppl_ratio": (0.096488, 1e-6), "ln_ppl_ratio_se": (0.061461, 1e-6),
              "ppl_ratio": (1.101296, 1e-6), "ppl_diff": (4.239113, 1e-6),
              "kld_mean": (0.251813, 1e-6), "kld_mean_se": (0.013465, 1e-6),
              "kld_max": (0.937616, 1e-6), "kld_p99_9": (0.929779, 1e-6),
              "kld_p99": (0.848698, 1e-6), "kld_p95": (0.521459, 1e-6),
              "kld_p90": (0.422614, 1e-6), "kld_median": (0.218359, 1e-6),
              "kld_min": (0.008000, 1e-6), "dp_mean": (-0.02916, 1e-5),
              "rms_dp": (0.09978, 1e-5), "same_top1": (0.66667, 1e-5),
              "same_top1_se": (0.04216, 1e-5)}
    for key, (value, unit) in expect.items():
        assert js[key] == pytest.approx(value, abs=unit), key


def test_corrupt_files_are_refused(c16_path: Path, tmp_path: Path) -> None:
    data = c16_path.read_bytes()
    bad = tmp_path / "bad.kld"
    bad.write_bytes(b"_LOGITS_" + data[8:])
    with pytest.raises(FormatError, match="magic"):
        KldBase(bad)
    bad.write_bytes(data[:-10])
    with pytest.raises(FormatError, match=f"truncated: expected {len(data)} bytes.*found {len(data) - 10}"):
        KldBase(bad)
    bad.write_bytes(data + b"\0\0")
    with pytest.raises(FormatError, match="trailing"):
        KldBase(bad)
    bad.write_bytes(data[:12])
    with pytest.raises(FormatError, match="truncated header"):
        KldBase(bad)
    with pytest.raises(FormatError, match="no such"):
        KldBase(tmp_path / "missing.kld")


def test_interrupted_writer_leaves_nothing(tmp_path: Path) -> None:
    out = tmp_path / "x.kld"
    tokens = np.arange(2 * 8, dtype=np.int32).reshape(2, 8)
    w = KldBaseWriter(out, tokens, 50)
    w.append(np.random.default_rng(0).normal(size=(3, 50)))
    with pytest.raises(MismatchError, match="1 of 2 chunks"):
        w.close()
    assert not out.exists() and not list(tmp_path.iterdir())
    with pytest.raises(RuntimeError), KldBaseWriter(out, tokens, 50) as w2:
        w2.append(np.zeros((3, 50)))
        raise RuntimeError("boom")
    assert not list(tmp_path.iterdir())
    with pytest.raises(MismatchError, match="shape"):
        KldBaseWriter(out, tokens, 50).append(np.zeros((4, 50)))


def test_encoding_matches_definition_on_odd_vocab() -> None:
    """Independent check of the row layout and quantization rule on a small odd vocab."""
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(4, 7)) * 6).astype(np.float32)
    x[3] = 2.5  # constant row: scale 0, all codes 0, min log-prob -ln 7
    rows = encode_rows(x)
    assert rows.shape == (4, 7 + 1 + 4) and np.all(rows[:, -1] == 0)
    for i in range(3):
        mx = float(x[i].max())
        lo = max(float(x[i].min()), mx - 16)
        scale = np.float32((mx - lo) / 65535)
        head = rows[i, :4].view(np.float32)
        assert head[0] == pytest.approx(scale, rel=1e-6)
        lse = mx + np.log(np.exp(x[i].astype(np.float64) - mx).sum())
        assert head[1] == pytest.approx(lo - lse, abs=1e-5)
        want = [0 if v <= lo else round((v - lo) / scale) for v in x[i].astype(np.float64)]
        assert np.all(np.abs(rows[i, 4:11].astype(int) - np.array(want)) <= 1)
        assert rows[i, 4 + int(x[i].argmax())] == 65535
    assert np.all(rows[3, 4:] == 0)
    head = rows[3, :4].view(np.float32)
    assert head[0] == 0 and head[1] == pytest.approx(-np.log(7), abs=1e-6)


def test_file_stats_agree_with_exact_logprobs_to_16_bits() -> None:
    """KLD, NLL, dp through a llama.cpp file vs computed from exact log-probs (our full store's
    numbers) agree within the format's precision: 16-bit steps of <= 16/65535 nats and the
    mass below the -16 nats cut (bounded here explicitly)."""
    from quantfid.metrics.token import token_metrics

    rng = np.random.default_rng(3)
    n, vocab = 40, 300
    ref = (rng.normal(size=(n, vocab)) * 2.5).astype(np.float32)
    q = (ref + rng.normal(size=(n, vocab)).astype(np.float32) * 0.3).astype(np.float32)
    tgt = rng.integers(0, vocab, n)
    rows = encode_rows(ref)
    via_file = metrics_from_rows(rows, q, tgt)
    exact = token_metrics(ref, q, tgt)
    step = 16 / 65535
    lp = ref - ref.max(axis=1, keepdims=True)
    lp = lp - np.log(np.exp(lp.astype(np.float64)).sum(axis=1, keepdims=True))
    lq = q - np.log(np.exp(q.astype(np.float64)).sum(axis=1, keepdims=True))
    below = lp <= lp.max(axis=1, keepdims=True) - 16
    cut = (np.exp(lp) * np.abs(lp - lq) * below).sum(axis=1)
    assert np.all(np.abs(via_file.nll_ref - exact.nll_ref) <= step / 2 + 1e-5)
    np.testing.assert_allclose(via_file.nll_q, exact.nll_q, atol=1e-5)
    assert np.all(np.abs(via_file.kld - exact.kld) <= 2 * step * (1 + np.abs(lp - lq).max()) + cut)
    assert abs(via_file.kld.mean() / exact.kld.mean() - 1) < 1e-3
    assert np.all(np.abs(via_file.dp - exact.dp) <= step)
    np.testing.assert_array_equal(via_file.same_top1, exact.same_top1)


def test_export_full_store(tmp_path: Path) -> None:
    from quantfid.store.full import FullStoreWriter
    from quantfid.store.llamacpp import kld_base_from_store

    rng = np.random.default_rng(4)
    logits = rng.normal(size=(2, 7, 33)).astype(np.float32) * 3
    toks = rng.integers(0, 33, size=(2, 16)).astype(np.int32)
    w = FullStoreWriter(tmp_path / "s", model_id="m", tokenizer_id="t", vocab_size=33, ctx=16)
    for i in range(2):
        w.append(logits[i], toks[i])
    kb = kld_base_from_store(w.close(), tmp_path / "s.kld")
    np.testing.assert_array_equal(np.asarray(kb.tokens), toks)
    for c in range(2):
        np.testing.assert_array_equal(np.asarray(kb.rows[c])[:, 4:], encode_rows(logits[c])[:, 4:])
        np.testing.assert_array_equal(kb.targets(c), toks[c, 9:])


def test_metrics_against_refuses_bad_input(c16_path: Path) -> None:
    kb = KldBase(c16_path)
    q = np.zeros((7, kb.n_vocab - 1), np.float32)
    with pytest.raises(MismatchError, match=r"expected shape \(7, 49152\)"):
        kb.metrics_against(0, q)
    with pytest.raises(MismatchError, match="targets differ"):
        kb.metrics_against(0, np.zeros((7, kb.n_vocab), np.float32), targets=np.zeros(7))
    bad = np.zeros((7, kb.n_vocab), np.float32)
    bad[3, 11] = np.inf
    with pytest.raises(FormatError, match=r"token 3, vocab 11"):
        kb.metrics_against(0, bad)
    with pytest.raises(MismatchError, match="out of range"):
        kb.metrics_against(2, bad)
