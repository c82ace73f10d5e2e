"""The per-token metrics record and the summary keys every command prints.

Conventions (DESIGN.md, "Definitions"): P is the reference, Q the quant; KL(P||Q) in nats
(llama.cpp's direction); all log-softmax computed in float32 or better.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

# Keys of `quantfid stats --json` / `quantfid measure --json`, always all present
# (None where not computable). Fractions, not percent.
STATS_KEYS: tuple[str, ...] = (
    "n_tokens", "kld_mean", "kld_mean_se", "kld_median", "kld_p90", "kld_p95", "kld_p99",
    "kld_p99_9", "kld_max", "kld_min", "rkld_mean", "jsd_mean", "ppl_q", "ppl_ref",
    "ln_ppl_ratio", "ln_ppl_ratio_se", "ppl_ratio", "ppl_diff", "same_top1", "same_top1_se",
    "dp_mean", "rms_dp",
)


@dataclass(frozen=True)
class TokenMetrics:
    """Per-token metrics for T scored tokens (all arrays shape (T,)).

    kld: KL(P_ref || P_q) = sum_v p_ref(v) (ln p_ref(v) - ln p_q(v)), nats, float64.
    rkld: KL(P_q || P_ref), nats. jsd: Jensen-Shannon divergence, nats (<= ln 2).
    nll_ref / nll_q: -ln p(next token) under each, nats. dp: p_q(next) - p_ref(next).
    same_top1: argmax of P_ref == argmax of P_q. ref_top1_prob: max_v p_ref(v).
    top5_overlap / top10_overlap: |topk(P_ref) & topk(P_q)| / k.
    Fields that need the next token (nll_*, dp) or were not requested are None.
    """

    kld: np.ndarray
    same_top1: np.ndarray
    ref_top1_prob: np.ndarray
    rkld: np.ndarray | None = None
    jsd: np.ndarray | None = None
    nll_ref: np.ndarray | None = None
    nll_q: np.ndarray | None = None
    dp: np.ndarray | None = None
    top5_overlap: np.ndarray | None = None
    top10_overlap: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.kld.shape[0])

    def arrays(self) -> dict[str, np.ndarray]:
        """The present fields by name."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if getattr(self, f.name) is not None}

    @staticmethod
    def concat(parts: list[TokenMetrics]) -> TokenMetrics:
        """Concatenate along tokens; a field is kept only if every part has it."""
        if not parts:
            raise ValueError("concat of no TokenMetrics")
        out: dict[str, Any] = {}
        for f in dataclasses.fields(TokenMetrics):
            vals = [getattr(p, f.name) for p in parts]
            out[f.name] = None if any(v is None for v in vals) else np.concatenate(vals)
        return TokenMetrics(**out)
