"""llama.cpp ``llama-perplexity`` logs -> a fidelity summary row and per-task Outcomes.

Read from the text llama-perplexity prints (stdout and stderr captured together):

- ``--kl-divergence``: the statistics block printed at the end::

      Mean PPL(Q)                   :  <v> ± <se>
      Mean PPL(base)                :  <v> ± <se>
      Mean ln(PPL(Q)/PPL(base))     :  <v> ± <se>
      Mean PPL(Q)/PPL(base)         :  <v> ± <se>
      Mean PPL(Q)-PPL(base)         :  <v> ± <se>
      Mean    KLD:  <v> ± <se>      Maximum KLD / 99.9% / 99.0% / 95.0% / 90.0% / Median / Minimum KLD
      Mean    Δp: <v> ± <se> %      RMS Δp    : <v> ± <se> %      Same top p: <v> ± <se> %

  mapped to ``STATS_KEYS`` (KL in nats, KL(P_base || P_Q); Δp and same-top **percent
  divided by 100**). llama.cpp prints the block only with >= 100 scored tokens: for a
  run that short the last per-chunk row (running means of PPL(Q), ln ratio, KLD, RMS Δp,
  same top) is used, with a warning; a log of >= 100 scored tokens without the complete
  block (through its last line, ``Same top p``) was cut short and is refused, as are
  chunk rows out of order. ``n_windows`` is the number of chunk rows; ``n_tokens`` =
  chunks x (ctx - 1 - ctx/2) (llama.cpp scores the second half of each window:
  ``scoring = "llamacpp"``). ``ctx`` is taken from ``--ctx`` or the ``n_ctx = N`` line,
  and must leave scored tokens (3 <= ctx < 2^31). Values are checked: PPLs > 0, same top
  and RMS Δp in [0, 1]; a non-finite printed value is stored as null.
- ``--winogrande``: one line per task ``<i>\\t<acc so far %>\\t<score 1>  <score 2>
  <choice>  <answer>``; ``passed = choice == answer``, ``score`` = score of the answer
  minus score of the other choice (mean log-prob per token). Prompt ids are the printed
  task numbers (1-based; with ``--winogrande-tasks N`` the position in llama.cpp's
  seeded selection, the same for every model given the same data file and N).
- ``--hellaswag`` / ``--multiple-choice``: only the running accuracy is printed per task
  (``<i>\\t<acc so far %>...``); per-task pass/fail is recovered exactly from consecutive
  running counts (round(acc x i / 100)).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

from quantfid.errors import FormatError
from quantfid.ingest.common import IngestResult
from quantfid.metrics.types import STATS_KEYS
from quantfid.records import Outcome

SOURCE = "llama-perplexity"
SCORING = "llamacpp"
CI_KEYS = ("kld_mean_ci_low", "kld_mean_ci_high", "ln_ppl_ratio_ci_low", "ln_ppl_ratio_ci_high")

_NUM = r"[-+]?(?:nan|inf|\d+(?:\.\d*)?(?:[eE][-+]?\d+)?)"
# "±" and "Δ" as printed (UTF-8), or mangled by a log viewer / wrong decoding
_PM = r"\s*(?:±|\+/-|Â±|\ufffd{1,2})\s*"
_D = r"(?:Δ|Î.|\ufffd{1,2})"
# label regex -> (value key, se key or None, divide by 100)
_STAT_LINES: list[tuple[re.Pattern[str], str, str | None, bool]] = [
    (re.compile(rf"Mean PPL\(Q\)\s*:\s*({_NUM}){_PM}({_NUM})"), "ppl_q", None, False),
    (re.compile(rf"Mean PPL\(base\)\s*:\s*({_NUM}){_PM}({_NUM})"), "ppl_ref", None, False),
    (re.compile(rf"Mean ln\(PPL\(Q\)/PPL\(base\)\)\s*:\s*({_NUM}){_PM}({_NUM})"),
     "ln_ppl_ratio", "ln_ppl_ratio_se", False),
    (re.compile(rf"Mean PPL\(Q\)/PPL\(base\)\s*:\s*({_NUM}){_PM}({_NUM})"), "ppl_ratio", None, False),
    (re.compile(rf"Mean PPL\(Q\)-PPL\(base\)\s*:\s*({_NUM}){_PM}({_NUM})"), "ppl_diff", None, False),
    (re.compile(rf"Mean\s+KLD:\s*({_NUM}){_PM}({_NUM})"), "kld_mean", "kld_mean_se", False),
    (re.compile(rf"Maximum KLD:\s*({_NUM})"), "kld_max", None, False),
    (re.compile(rf"99\.9%\s+KLD:\s*({_NUM})"), "kld_p99_9", None, False),
    (re.compile(rf"99\.0%\s+KLD:\s*({_NUM})"), "kld_p99", None, False),
    (re.compile(rf"95\.0%\s+KLD:\s*({_NUM})"), "kld_p95", None, False),
    (re.compile(rf"90\.0%\s+KLD:\s*({_NUM})"), "kld_p90", None, False),
    (re.compile(rf"Median\s+KLD:\s*({_NUM})"), "kld_median", None, False),
    (re.compile(rf"Minimum KLD:\s*({_NUM})"), "kld_min", None, False),
    (re.compile(rf"Mean\s+{_D}p:\s*({_NUM}){_PM}({_NUM})\s*%"), "dp_mean", None, True),
    (re.compile(rf"RMS {_D}p\s*:\s*({_NUM}){_PM}({_NUM})\s*%"), "rms_dp", None, True),
    (re.compile(rf"Same top p:\s*({_NUM}){_PM}({_NUM})\s*%"), "same_top1", "same_top1_se", True),
]
_CHUNK_ROW = re.compile(
    rf"(?:^|\s)(\d+)\s+({_NUM}){_PM}({_NUM})\s+({_NUM}){_PM}({_NUM})\s+({_NUM}){_PM}({_NUM})"
    rf"\s+({_NUM}){_PM}({_NUM})\s*%\s+({_NUM}){_PM}({_NUM})\s*%\s*$")
# any per-chunk row (older llama.cpp printed fewer columns): only counted
_ANY_CHUNK_ROW = re.compile(rf"(?:^|\s)(\d+)(?:\s+{_NUM}{_PM}{_NUM}\s*%?){{3,}}\s*$")
_N_CTX = re.compile(r"\bn_ctx\s*=\s*(\d+)\b")
_WINO = re.compile(rf"(?:^|\s)(\d+)\t({_NUM})\t\s*({_NUM})\s+({_NUM})\s+([12])\s+([12])\s*$")
_MC_HEADER = re.compile(r"(?:^|\s)task\tacc_norm(\t95% confidence interval)?\s*$")
_MC_ROW = re.compile(rf"(?:^|\s)(\d+)\t({_NUM})%?(?:\t\[.*\])?\s*$")


def _f(s: str) -> float:
    return float(s)


def empty_fidelity_row() -> dict[str, Any]:
    """A fidelity row with every STATS_KEYS / CI key present and None."""
    return {k: None for k in (*STATS_KEYS, *CI_KEYS)}


MIN_STATS_TOKENS = 100  # llama.cpp prints the statistics block only from this count
MAX_CTX = 2**31 - 1
_BLOCK_NEEDS = ("ppl_q", "kld_mean", "same_top1")  # first, middle and last line of it


def parse_kld(lines: list[str], path: Path) -> tuple[dict[str, Any], int, dict[str, Any]]:
    """The KLD statistics block as STATS_KEYS values ({} without one), the number of chunk
    rows, and the last per-chunk row's running means ({} without one)."""
    stats: dict[str, Any] = {}
    where: dict[str, int] = {}
    chunks = 0
    last_row: re.Match[str] | None = None
    for n, line in enumerate(lines, 1):
        any_row = _ANY_CHUNK_ROW.search(line)
        if any_row:
            i = int(any_row[1])
            if i != chunks + 1 or stats:
                raise FormatError(f"{path}:{n}: chunk row {i} after chunk {chunks}"
                                  + (" and the statistics block" if stats else "")
                                  + ": one llama-perplexity run per log, please")
            chunks = i
            last_row = _CHUNK_ROW.search(line) or last_row
            continue
        for rx, key, se_key, pct in _STAT_LINES:
            m = rx.search(line)
            if not m:
                continue
            if key in where:
                raise FormatError(f"{path}:{n}: a second '{key}' statistic (first at line "
                                  f"{where[key]}): one llama-perplexity run per log, please")
            where[key] = n
            scale = 0.01 if pct else 1.0
            stats[key] = _f(m[1]) * scale
            if se_key is not None:
                stats[se_key] = _f(m[2]) * scale
            break
    running: dict[str, Any] = {}
    if last_row is not None:
        g = [_f(x) for x in last_row.groups()[1:]]
        running = {"ppl_q": g[0], "ln_ppl_ratio": g[2], "ln_ppl_ratio_se": g[3],
                   "kld_mean": g[4], "kld_mean_se": g[5], "rms_dp": g[6] / 100,
                   "same_top1": g[8] / 100, "same_top1_se": g[9] / 100}
    if stats and any(k not in stats for k in _BLOCK_NEEDS):
        missing = ", ".join(k for k in _BLOCK_NEEDS if k not in stats)
        raise FormatError(f"{path}: the KL divergence statistics block is incomplete (no "
                          f"{missing}): the log was cut short; re-run llama-perplexity")
    return stats, chunks, running


def _kld_stats(path: Path, stats: dict[str, Any], chunks: int, running: dict[str, Any],
               n_ctx: int) -> tuple[dict[str, Any], list[str]]:
    """The statistics to store: the block, or for a run too short to print one the last
    chunk row (warned); a longer log without its block was cut short (refused)."""
    if stats:
        return stats, []
    n_tok = chunks * (n_ctx - 1 - n_ctx // 2)
    if n_tok >= MIN_STATS_TOKENS:
        raise FormatError(f"{path}: no KL divergence statistics block after {chunks} chunk(s) "
                          f"of ctx {n_ctx} ({n_tok} scored tokens; llama.cpp prints it from "
                          f"{MIN_STATS_TOKENS}): the log was cut short; re-run llama-perplexity "
                          "(the per-chunk rows are running means, not the result)")
    return running, [f"{path}: no KL divergence statistics block ({n_tok} scored tokens: "
                     f"llama.cpp prints it only for >= {MIN_STATS_TOKENS}); used the last "
                     "per-chunk row (running means)"]


def _check_ctx(n_ctx: int, path: Path) -> int:
    if not 3 <= n_ctx <= MAX_CTX:
        raise FormatError(f"{path}: context length {n_ctx} leaves no scored tokens or is out "
                          f"of range (llama.cpp scores n_ctx - 1 - n_ctx/2 per chunk; need "
                          f"3 <= ctx <= {MAX_CTX})")
    return n_ctx


def _check_stats(stats: dict[str, Any], path: Path) -> None:
    """Printed values in their documented ranges (non-finite ones become null later)."""
    for key in ("ppl_q", "ppl_ref", "ppl_ratio"):
        v = stats.get(key)
        if v is not None and math.isfinite(v) and v <= 0:
            raise FormatError(f"{path}: {key} {v} is not positive")
    for key in ("same_top1", "rms_dp"):
        v = stats.get(key)
        if v is not None and math.isfinite(v) and not 0.0 <= v <= 1.0:
            raise FormatError(f"{path}: {key} {100 * v:g}% is outside [0, 100]%")


def parse_ctx(lines: list[str]) -> int | None:
    for line in lines:
        m = _N_CTX.search(line)
        if m:
            return int(m[1])
    return None


def parse_winogrande(lines: list[str], path: Path) -> list[tuple[str, bool, float, int]]:
    """(task number, passed, score margin, line) per winogrande task line."""
    out: list[tuple[str, bool, float, int]] = []
    n_correct = 0
    for n, line in enumerate(lines, 1):
        m = _WINO.search(line)
        if not m:
            continue
        i = int(m[1])
        if i != len(out) + 1:
            raise FormatError(f"{path}:{n}: winogrande task {i} after task {len(out)}")
        s1, s2, choice, answer = _f(m[3]), _f(m[4]), int(m[5]), int(m[6])
        if not (math.isfinite(s1) and math.isfinite(s2) and math.isfinite(_f(m[2]))):
            raise FormatError(f"{path}:{n}: winogrande task {i}: a score is not finite")
        passed = choice == answer
        n_correct += passed
        if abs(100.0 * n_correct / i - _f(m[2])) > 1e-3:
            raise FormatError(f"{path}:{n}: running accuracy {m[2]} disagrees with the "
                              f"per-task results ({n_correct}/{i})")
        margin = (s1 - s2) if answer == 1 else (s2 - s1)
        out.append((str(i), passed, margin, n))
    return out


def parse_running(lines: list[str], path: Path) -> list[tuple[str, bool, int]]:
    """(task number, passed, line) from --hellaswag / --multiple-choice running accuracies."""
    out: list[tuple[str, bool, int]] = []
    active = False
    prev = 0
    for n, line in enumerate(lines, 1):
        if _MC_HEADER.search(line):
            if out:
                raise FormatError(f"{path}:{n}: a second task table in one log")
            active = True
            continue
        if not active:
            continue
        m = _MC_ROW.search(line)
        if not m:
            if out and line.strip():
                active = False
            continue
        i = int(m[1])
        if i != len(out) + 1:
            raise FormatError(f"{path}:{n}: task {i} after task {len(out)}")
        acc = _f(m[2])
        if not 0.0 <= acc <= 100.0:  # also NaN
            raise FormatError(f"{path}:{n}: running accuracy {m[2]} is not in [0, 100]")
        correct = round(acc * i / 100.0)
        if correct - prev not in (0, 1):
            raise FormatError(f"{path}:{n}: running accuracy {m[2]} is not one task more than "
                              f"the previous line")
        out.append((str(i), correct - prev == 1, n))
        prev = correct
    return out


def read(paths: list[Path], model: str, *, reference: str | None = None,
         corpus: str | None = None, ctx: int | None = None,
         benchmark: str | None = None) -> IngestResult:
    """Read llama-perplexity logs for ``model`` (its KLD against ``reference``)."""
    res = IngestResult()
    for path in paths:
        if not path.is_file():
            raise FormatError(f"{path}: no such file (give a llama-perplexity log)")
        try:
            lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
        except OSError as e:
            raise FormatError(f"{path}: cannot read ({e})") from e
        found = False
        stats, chunks, running = parse_kld(lines, path)
        if stats or running:
            found = True
            n_ctx = ctx if ctx is not None else parse_ctx(lines)
            if n_ctx is None:
                raise FormatError(f"{path}: no 'n_ctx = N' line in this log; give --ctx")
            n_ctx = _check_ctx(n_ctx, path)
            if corpus is None:
                raise FormatError(f"{path}: a KL divergence log; give --corpus NAME "
                                  "(the corpus id its fidelity row is filed under)")
            stats, warns = _kld_stats(path, stats, chunks, running, n_ctx)
            _check_stats(stats, path)
            res.warnings.extend(warns)
            row = empty_fidelity_row()
            row.update(stats)
            n_tok = chunks * (n_ctx - 1 - n_ctx // 2) if chunks else None
            row.update({"model": model, "reference": reference, "corpus": corpus,
                        "corpus_hash": None, "ctx": n_ctx, "scoring": SCORING,
                        "n_windows": chunks or None, "n_tokens": n_tok})
            for k, v in list(row.items()):
                if isinstance(v, float) and not math.isfinite(v):
                    row[k] = None
            key = f"fidelity:{corpus}:{n_ctx}"
            if key in res.files:
                raise FormatError(f"{path}: a second KL divergence log for corpus {corpus!r} at "
                                  f"ctx {n_ctx} ({res.files[key][0]}); give one per call")
            res.fidelity.append(row)
            res.files[key] = [path]
        wino = parse_winogrande(lines, path)
        if wino:
            found = True
            _add(res, benchmark or "winogrande", path, model,
                 [(pid, ok, score) for pid, ok, score, _ in wino], "winogrande")
        elif (tasks := parse_running(lines, path)):
            found = True
            kind = "hellaswag" if any("95% confidence interval" in x for x in lines) \
                else "multiple-choice"
            _add(res, benchmark or kind, path, model,
                 [(pid, ok, None) for pid, ok, _ in tasks], kind)
        if not found:
            raise FormatError(f"{path}: no KL divergence statistics and no per-task lines "
                              "(--winogrande, --hellaswag, --multiple-choice) in this "
                              "llama-perplexity log")
    return res


def _add(res: IngestResult, bench: str, path: Path, model: str,
         rows: list[tuple[str, bool, float | None]], kind: str) -> None:
    if bench in res.benchmarks:
        raise FormatError(f"{path}: a second log for benchmark {bench!r} "
                          f"({res.files[bench][0]}); give one per benchmark")
    for pid, ok, score in rows:
        res.outcomes.append(Outcome(model=model, benchmark=bench, prompt_id=pid, passed=ok,
                                    score=score, samples=1, source=SOURCE))
    res.benchmarks[bench] = {"source": SOURCE, "metric": kind, "file": path.name, "n": len(rows)}
    res.files[bench] = [path]
