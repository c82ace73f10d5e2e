"""The metric kernels give the same bits in every process.

numba's on-disk cache broke this: a kernel loaded from the cache differed in the last bits
from the one the first process compiled (a fast-math callee re-optimised inside its caller's
cached code), so a resumed or distributed run disagreed with the run that compiled first.
Two fresh processes with a shared, initially empty numba cache directory must agree.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import sys
import numpy as np
from quantfid.store.compact import compact_metrics, compact_rows
rng = np.random.default_rng(0)
V, n = 4096, 64
ref = (rng.standard_normal((n, V)) * 3).astype(np.float32)
q = ref + (rng.standard_normal((n, V)) * 0.3).astype(np.float32)
t = rng.integers(0, V, n)
rows = compact_rows(ref, t, rng=np.random.default_rng(1))
m = compact_metrics(rows, q, t)
items = m.items() if isinstance(m, dict) else vars(m).items()
out = {k: v for k, v in items if isinstance(v, np.ndarray)}
out.update(logp=np.asarray(rows.logp), log_tail=np.asarray(rows.log_tail))
np.savez(sys.argv[1], **out)
"""


def test_two_processes_sharing_a_numba_cache_directory_agree_bitwise(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "QUANTFID_NUMBA_CACHE"}
    env.update(NUMBA_CACHE_DIR=str(tmp_path / "numba"),
               PYTHONPATH=os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")]))
    outs = []
    for i in range(2):
        out = tmp_path / f"run{i}.npz"
        subprocess.run([sys.executable, "-c", SCRIPT, str(out)], env=env, check=True,
                       cwd=tmp_path)
        outs.append(np.load(out))
    a, b = outs
    assert sorted(a.files) == sorted(b.files) and len(a.files) >= 8
    for k in a.files:
        assert a[k].tobytes() == b[k].tobytes(), k
