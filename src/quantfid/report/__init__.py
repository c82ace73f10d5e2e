"""The report: verdict, cohort table, plots, method and caveats, as HTML, Markdown and JSON.

``write_report(out_dir, analysis, provenance)`` writes ``report.html`` (one self-contained
file), ``report.md`` with ``plots/*.png`` beside it, and ``summary.json``, from the JSON of
``quantfid.analysis.run_all(ws).to_json()``; ``report_workspace(path)`` does it for a
workspace without running any model (``quantfid report``).
"""

from quantfid.report.build import ReportFiles, write_report
from quantfid.report.workspace import report_workspace

__all__ = ["ReportFiles", "report_workspace", "write_report"]
