"""Per model and benchmark outcome summary (``quantfid outcomes``).

n prompts, accuracy with its Wilson 95 % interval, and against the workspace reference on
the prompts both have: gains (reference fails, model passes), losses, and the exact McNemar
p (two-sided sign test on gains vs gains + losses). The reference's own rows, and every
row when the workspace has no reference, have gains / losses / p of None.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from quantfid.analysis.binomial import sign_test_p, wilson
from quantfid.store.workspace import Workspace


@dataclass(frozen=True)
class OutcomeRow:
    model: str
    benchmark: str
    n: int
    accuracy: float
    ci_low: float
    ci_high: float
    gains: int | None
    losses: int | None
    mcnemar_p: float | None

    def to_json(self) -> dict[str, Any]:
        return {"model": self.model, "benchmark": self.benchmark, "n": self.n,
                "accuracy": self.accuracy, "ci_low": self.ci_low, "ci_high": self.ci_high,
                "gains": self.gains, "losses": self.losses, "mcnemar_p": self.mcnemar_p}


def outcome_summary(ws: Workspace) -> list[OutcomeRow]:
    tbl = ws.read_table("outcomes")
    if tbl.num_rows == 0:
        return []
    ref_model = ws.reference
    ref = ref_model.id if ref_model else None
    c = tbl.select(["model", "benchmark", "prompt_id", "passed"]).to_pydict()
    res: dict[tuple[str, str], dict[str, bool]] = {}
    for m, b, p, v in zip(c["model"], c["benchmark"], c["prompt_id"], c["passed"], strict=True):
        res.setdefault((m, b), {})[str(p)] = bool(v)
    order = {m.id: i for i, m in enumerate(ws.models())}
    rows = []
    for (m, b), outs in sorted(res.items(), key=lambda kv: (order.get(kv[0][0], 10**9), kv[0][0], kv[0][1])):
        n = len(outs)
        k = sum(outs.values())
        lo, hi = wilson(k, n)
        gains = losses = None
        p = None
        if ref is not None and m != ref and (ref, b) in res:
            r = res[(ref, b)]
            shared = [pid for pid in outs if pid in r]
            gains = sum(1 for pid in shared if outs[pid] and not r[pid])
            losses = sum(1 for pid in shared if r[pid] and not outs[pid])
            p = float(sign_test_p(gains, gains + losses))
        rows.append(OutcomeRow(m, b, n, k / n, float(lo), float(hi), gains, losses, p))
    return rows
