"""Peak memory and workspace size of the study path for a large-vocabulary model.

A randomly initialised Llama built here (hidden 576, 4 layers, model vocabulary 151,936: the
embedded tokenizer's 49,152 ids padded to Qwen's size), saved as a model directory, runs
through ``quantfid study`` with one recipe quant: ``--windows`` windows of ``--ctx`` tokens of
one corpus plus ``--prompts`` benchmark prompts. Each run is a subprocess; it prints its peak
RSS and the workspace's bytes.

Baseline (``--baseline-rev``, default the commit before the one-pipeline change): the same
study with that revision's code (checked out with ``git worktree`` into a temporary
directory), at a small size (``--baseline-windows`` / ``--baseline-prompts``; its reference
kept full float32 log-prob matrices, so at full size it needs ~20 GB), extrapolated linearly
in windows and prompts to the full size.

    python benchmarks/bench_memory.py                      # full size: 16 x 4096 + 100 prompts
    python benchmarks/bench_memory.py --windows 2 --ctx 1024 --prompts 10 --no-baseline
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BASELINE_REV = "1ba9202"
VOCAB = 151_936

CHILD = r"""
import json, os, resource, sys, time
from pathlib import Path
from quantfid import config
from quantfid.study import run_study
cfg = config.load(sys.argv[1])
t0 = time.perf_counter()
run_study(cfg, sys.argv[2], progress=False)
wall = time.perf_counter() - t0
ws = Path(sys.argv[2])
size = sum(p.stat().st_size for p in ws.rglob("*") if p.is_file())
print(json.dumps({"peak_rss_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                  "workspace_bytes": size, "wall_s": wall}))
"""


def build_model(path: Path, hidden: int, layers: int, seed: int = 0) -> Path:
    """A random Llama (float32 safetensors) with the embedded tokenizer, vocab padded."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from quantfid import embedded

    g = embedded.gguf_path()
    tok = AutoTokenizer.from_pretrained(str(g.parent), gguf_file=g.name)
    cfg = LlamaConfig(vocab_size=VOCAB, hidden_size=hidden, intermediate_size=4 * hidden,
                      num_hidden_layers=layers, num_attention_heads=9, num_key_value_heads=3,
                      max_position_embeddings=8192, bos_token_id=tok.bos_token_id,
                      eos_token_id=tok.eos_token_id, tie_word_embeddings=False)
    torch.manual_seed(seed)
    model = LlamaForCausalLM(cfg)
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def write_config(path: Path, model: Path, ctx: int, windows: int, prompts: int) -> Path:
    path.write_text(f"""
[reference]
model = "{model}"
[quants]
recipes = ["Q8_0"]
[measure]
corpora = ["docs"]
contexts = [{ctx}]
chunks = [{windows}]
[[benchmarks]]
task = "cloze"
limit = {prompts}
[analysis]
n_boot = 100
""")
    return path


def run(src: Path, cfg: Path, out: Path) -> dict[str, float]:
    env = {**os.environ, "PYTHONPATH": str(src), "HF_HUB_OFFLINE": "1"}
    res = subprocess.run([sys.executable, "-c", CHILD, str(cfg), str(out)], env=env,
                         capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise SystemExit(f"study failed ({src}):\n{res.stderr[-3000:]}")
    return json.loads(res.stdout.strip().splitlines()[-1])


def baseline_src(rev: str, tmp: Path) -> Path:
    dest = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(dest), rev],
                   check=True, capture_output=True)
    return dest / "src"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ctx", type=int, default=4096)
    ap.add_argument("--windows", type=int, default=16)
    ap.add_argument("--prompts", type=int, default=100)
    ap.add_argument("--hidden", type=int, default=576)
    ap.add_argument("--layers", type=int, default=4)
    ap.add_argument("--baseline-rev", default=BASELINE_REV)
    ap.add_argument("--baseline-windows", type=int, default=2)
    ap.add_argument("--baseline-prompts", type=int, default=10)
    ap.add_argument("--no-baseline", action="store_true")
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        model = build_model(tmp / "model", a.hidden, a.layers)
        cfg = write_config(tmp / "now.toml", model, a.ctx, a.windows, a.prompts)
        now = run(ROOT / "src", cfg, tmp / "ws-now")
        gb = 1 << 30
        print(f"model: vocab {VOCAB}, hidden {a.hidden}, {a.layers} layers; study: {a.windows} x "
              f"{a.ctx} tokens + {a.prompts} prompts, reference + 1 quant (Q8_0)")
        print(f"this revision: peak RSS {now['peak_rss_bytes'] / gb:.2f} GiB, workspace "
              f"{now['workspace_bytes'] / 2**20:.1f} MiB, wall {now['wall_s']:.0f} s")
        if a.no_baseline:
            return
        src = baseline_src(a.baseline_rev, tmp)
        small = write_config(tmp / "old.toml", model, a.ctx, a.baseline_windows,
                             a.baseline_prompts)
        old = run(src, small, tmp / "ws-old")
        scale_w = a.windows / a.baseline_windows
        print(f"baseline {a.baseline_rev} at {a.baseline_windows} windows + {a.baseline_prompts} "
              f"prompts: peak RSS {old['peak_rss_bytes'] / gb:.2f} GiB, workspace "
              f"{old['workspace_bytes'] / 2**20:.1f} MiB")
        # its reference arrays are windows x scored x vocab float32: linear in windows
        ws_full = old["workspace_bytes"] * scale_w
        print(f"baseline extrapolated to {a.windows} windows: workspace ~{ws_full / gb:.1f} GiB "
              f"(peak RSS grows with it: each unit loads the window's full matrix)")
        print(f"ratio (baseline extrapolated / this revision): workspace "
              f"{ws_full / now['workspace_bytes']:.0f}x")
    finally:
        subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force",
                        str(tmp / "baseline")], capture_output=True, check=False)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
