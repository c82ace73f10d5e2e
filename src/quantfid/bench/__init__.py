"""Built-in per-prompt benchmarks: tasks (:mod:`quantfid.bench.tasks`), lm-eval-style encoding
(:mod:`quantfid.bench.encode`), the reference's prompt store (:mod:`quantfid.bench.refstore`),
generation tasks run in a sandbox (:mod:`quantfid.bench.generate`, :mod:`quantfid.bench.execute`)
and ``quantfid bench`` / ``measure --prompts`` (:mod:`quantfid.bench.run`).

Importing this package imports no model runtime; scoring goes through a backend's
``loglikelihood`` capability (:mod:`quantfid.backends.base`).
"""
