"""Volume / direction decomposition: counts by brute force, the exact identity."""

from __future__ import annotations

import numpy as np

from quantfid.analysis.cohort import MEAN
from quantfid.analysis.decomposition import identity_holds
from quantfid.analysis.run import run_all
from quantfid.store.workspace import Workspace


def test_flip_counts_and_identity(small_ws: Workspace) -> None:
    res = run_all(small_ws, n_boot=200, rng=np.random.default_rng(0))
    dec = res.decomposition
    outs = {(o.model, o.benchmark, o.prompt_id): o.passed for o in small_ws.outcomes()}
    ref = small_ws.require_reference().id
    for row in dec.rows:
        keys = [k for k in outs if k[0] == ref and k[1] == row.benchmark]
        g = sum(1 for _, b, p in keys if not outs[(ref, b, p)] and outs[(row.model, b, p)])
        loss = sum(1 for _, b, p in keys if outs[(ref, b, p)] and not outs[(row.model, b, p)])
        assert (row.gains, row.losses, row.n) == (g, loss, len(keys))
        sq = sum(outs[(row.model, b, p)] for _, b, p in keys) / len(keys)
        sr = sum(outs[(ref, b, p)] for _, b, p in keys) / len(keys)
        assert abs(row.score_delta - (sq - sr)) < 1e-12
        assert row.identity_holds
        if row.volume:
            assert row.direction is not None
            assert abs(row.score_delta - row.volume * (2 * row.direction - 1) / row.n) < 1e-12
    assert dec.identity_holds
    comp = {c["model"]: c for c in dec.composite}
    for q in res.cohort.cohort.quants:
        rows = [r for r in dec.rows if r.model == q]
        assert comp[q]["volume_sum"] == sum(r.volume for r in rows)
        assert abs(comp[q]["flip_rate_mean"] - np.mean([r.volume / r.n for r in rows])) < 1e-12
    quantities = {(c["quantity"], c["benchmark"], c["rule"]) for c in dec.to_json()["correlations"]}
    assert ("volume", "composite", None) in quantities
    assert ("net_direction", "composite", "paired") in quantities
    assert MEAN in res.silent_zone


def test_identity_function_detects_a_mismatch() -> None:
    assert identity_holds(30, 28, 5, 3, 40)
    assert not identity_holds(30, 28, 5, 2, 40)
    assert identity_holds(10, 10, 0, 0, 40)
    assert not identity_holds(11, 10, 0, 0, 40)
