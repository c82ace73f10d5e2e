"""Ingest per-prompt results of other tools into a workspace: one small adapter per format.

``read(fmt, paths, model, **options) -> IngestResult`` dispatches to
``lm_eval``, ``livecodebench``, ``evalplus``, ``llamacpp`` or ``table``; ``store`` writes
the result into a workspace after the cohort prompt-set checks of ``validate``.
"""

from __future__ import annotations

from quantfid.ingest.common import DEFAULT_PASS_THRESHOLD, IngestResult
from quantfid.ingest.prompts import PromptText, read_prompts
from quantfid.ingest.run import FORMATS, BenchmarkSummary, IngestSummary, ingest, read

__all__ = ["DEFAULT_PASS_THRESHOLD", "FORMATS", "BenchmarkSummary", "IngestResult",
           "IngestSummary", "PromptText", "ingest", "read", "read_prompts"]
