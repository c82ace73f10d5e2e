from __future__ import annotations

import re

import pytest

from quantfid.errors import FormatError
from quantfid.ingest import llamacpp
from quantfid.metrics.types import STATS_KEYS


def _printed(text: str, label: str) -> list[float]:
    """The numbers after ``label:`` on the line that starts with it (plain string scan)."""
    for line in text.splitlines():
        if line.startswith(label):
            rest = line.split(":", 1)[1] if label[-1] != ":" else line[len(label):]
            return [float(x) for x in re.findall(r"-?\d+\.\d+", rest)]
    raise AssertionError(label)


def test_kld_block_maps_to_stats_keys(fix):
    path = fix / "llamacpp/kld_q4.log"
    text = path.read_text()
    res = llamacpp.read([path], "q4", reference="ref", corpus="wiki")
    (row,) = res.fidelity
    assert set(STATS_KEYS) <= set(row)
    assert [row["kld_mean"], row["kld_mean_se"]] == _printed(text, "Mean    KLD:")
    assert row["kld_max"] == _printed(text, "Maximum KLD:")[0]
    assert row["kld_p99_9"] == _printed(text, "99.9%   KLD:")[0]
    assert row["kld_p99"] == _printed(text, "99.0%   KLD:")[0]
    assert row["kld_p95"] == _printed(text, "95.0%   KLD:")[0]
    assert row["kld_p90"] == _printed(text, "90.0%   KLD:")[0]
    assert row["kld_median"] == _printed(text, "Median  KLD:")[0]
    assert row["kld_min"] == _printed(text, "Minimum KLD:")[0]
    assert row["ppl_q"] == _printed(text, "Mean PPL(Q)  ")[0]
    assert row["ppl_ref"] == _printed(text, "Mean PPL(base)")[0]
    assert [row["ln_ppl_ratio"], row["ln_ppl_ratio_se"]] == _printed(text, "Mean ln(PPL(Q)/PPL(base))")
    assert row["ppl_ratio"] == _printed(text, "Mean PPL(Q)/PPL(base)")[0]
    assert row["ppl_diff"] == _printed(text, "Mean PPL(Q)-PPL(base)")[0]
    # percent -> fractions
    assert row["same_top1"] == pytest.approx(_printed(text, "Same top p:")[0] / 100)
    assert row["same_top1_se"] == pytest.approx(_printed(text, "Same top p:")[1] / 100)
    assert row["rms_dp"] == pytest.approx(_printed(text, "RMS Δp    :")[0] / 100)
    assert row["dp_mean"] == pytest.approx(_printed(text, "Mean    Δp:")[0] / 100)
    assert row["rkld_mean"] is None and row["jsd_mean"] is None
    assert (row["model"], row["reference"], row["corpus"], row["ctx"], row["scoring"]) == \
        ("q4", "ref", "wiki", 512, "llamacpp")
    assert row["n_windows"] == 3 and row["n_tokens"] == 3 * (512 - 1 - 256)
    assert not res.outcomes and not res.warnings


def test_ctx_override_corpus_required(fix):
    path = fix / "llamacpp/kld_q4.log"
    row = llamacpp.read([path], "q4", corpus="wiki", ctx=1024).fidelity[0]
    assert row["ctx"] == 1024 and row["n_tokens"] == 3 * (1024 - 1 - 512)
    with pytest.raises(FormatError, match="give --corpus"):
        llamacpp.read([path], "q4")


def test_short_run_uses_last_chunk_row(fix):
    """1 chunk at ctx 128 = 63 scored tokens: llama.cpp prints no block (< 100 tokens)."""
    res = llamacpp.read([fix / "llamacpp/kld_tiny_q4.log"], "q4", corpus="wiki")
    row = res.fidelity[0]
    # the chunk row: 1  9.8123 ± 0.2051  0.00412 ± 0.00231  0.01234 ± 0.00061  3.112 ± 0.101 %  95.312 ± 0.933 %
    assert (row["ppl_q"], row["ln_ppl_ratio"], row["kld_mean"], row["kld_mean_se"]) == \
        (9.8123, 0.00412, 0.01234, 0.00061)
    assert row["rms_dp"] == pytest.approx(0.03112) and row["same_top1"] == pytest.approx(0.95312)
    assert row["kld_median"] is None and row["n_tokens"] == 63
    assert any("last per-chunk row" in w for w in res.warnings)


def test_cut_log_is_refused(fix, copy_fixture):
    """3 chunks at ctx 512 (765 tokens) without the block, or a block cut in the middle."""
    with pytest.raises(FormatError, match=r"no KL divergence statistics block after 3 chunk"
                                          r".*765 scored tokens.*cut short"):
        llamacpp.read([fix / "llamacpp/kld_short_q4.log"], "q4", corpus="wiki")
    p = copy_fixture("llamacpp/kld_q4.log")
    text = p.read_text(encoding="utf-8")
    p.write_text(text[:text.index("====== Token probability")], encoding="utf-8")
    with pytest.raises(FormatError, match=r"block is incomplete \(no same_top1\)"):
        llamacpp.read([p], "q4", corpus="wiki")


def test_chunk_rows_out_of_order_and_bad_ctx(fix, copy_fixture):
    p = copy_fixture("llamacpp/kld_q4.log")
    p.write_text(p.read_text(encoding="utf-8").replace("\n   2  ", "\n   5  "), encoding="utf-8")
    with pytest.raises(FormatError, match=r"kld_q4.log:\d+: chunk row 5 after chunk 1"):
        llamacpp.read([p], "q4", corpus="wiki")
    with pytest.raises(FormatError, match=r"context length 2 leaves no scored tokens"):
        llamacpp.read([fix / "llamacpp/kld_q4.log"], "q4", corpus="wiki", ctx=2)


def test_winogrande_tasks(fix):
    path = fix / "llamacpp/winogrande_ref.log"
    res = llamacpp.read([path], "ref")
    got = {o.prompt_id: o for o in res.outcomes}
    rows = [line.split() for line in path.read_text().splitlines()
            if re.match(r"^\d+\t", line)]
    assert len(got) == len(rows) == 6
    for r in rows:  # independent: choice = 1 if score1 > score2 else 2, passed = choice == answer
        s1, s2, ans = float(r[2]), float(r[3]), int(r[5])
        o = got[r[0]]
        assert o.passed == ((1 if s1 > s2 else 2) == ans)
        assert o.score == pytest.approx((s1 - s2) if ans == 1 else (s2 - s1))
        assert o.benchmark == "winogrande" and o.source == "llama-perplexity"
    assert not res.fidelity


def test_winogrande_running_accuracy_must_agree(copy_fixture):
    p = copy_fixture("llamacpp/winogrande_ref.log")
    text = p.read_text().replace("3\t33.3333\t", "3\t66.6667\t")
    p.write_text(text)
    with pytest.raises(FormatError, match=r"winogrande_ref.log:6: running accuracy 66.6667"):
        llamacpp.read([p], "ref")


def test_hellaswag_from_running_accuracy(fix):
    res = llamacpp.read([fix / "llamacpp/hellaswag_ref.log"], "ref")
    assert [o.passed for o in sorted(res.outcomes, key=lambda o: int(o.prompt_id))] == \
        [True, False, False, True, True]
    assert {o.benchmark for o in res.outcomes} == {"hellaswag"}


def test_not_a_perplexity_log(tmp_path):
    p = tmp_path / "x.log"
    p.write_text("hello\nworld\n")
    with pytest.raises(FormatError, match=r"x\.log: no KL divergence statistics and no per-task"):
        llamacpp.read([p], "m")


def test_log_prefixes_and_mangled_symbols(fix, tmp_path):
    """Timestamped log lines (--log-prefix --log-timestamps) and a log decoded as latin-1."""
    text = (fix / "llamacpp/kld_q4.log").read_text(encoding="utf-8")
    prefixed = "\n".join(f"0.01.234.567 I {x}" if x else x for x in text.splitlines())
    p1 = tmp_path / "prefixed.log"
    p1.write_text(prefixed, encoding="utf-8")
    p2 = tmp_path / "mangled.log"
    p2.write_text(text.encode("utf-8").decode("latin-1"), encoding="utf-8")
    want = llamacpp.read([fix / "llamacpp/kld_q4.log"], "q4", corpus="wiki").fidelity[0]
    for p in (p1, p2):
        assert llamacpp.read([p], "q4", corpus="wiki").fidelity[0] == want


def test_older_four_column_chunk_rows_still_count(fix, tmp_path):
    lines = (fix / "llamacpp/kld_q4.log").read_text().splitlines()
    out = []
    for x in lines:  # drop the 'Δp RMS' pair from the chunk rows, as older builds printed
        m = re.match(r"^(\s*\d+(?:\s+\S+\s+±\s+\S+){3})\s+\S+\s+±\s+\S+ %(.*)$", x)
        out.append(m[1] + m[2] if m else x)
    assert sum(a != b for a, b in zip(out, lines, strict=True)) == 3
    p = tmp_path / "old.log"
    p.write_text("\n".join(out))
    row = llamacpp.read([p], "q4", corpus="wiki").fidelity[0]
    assert row["n_windows"] == 3 and row["kld_mean"] == 0.012012
