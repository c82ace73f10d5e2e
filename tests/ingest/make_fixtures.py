"""Regenerate the ingest fixtures: ``python tests/ingest/make_fixtures.py``.

Every prompt, answer and number is made up. The files follow the layouts the real tools
write (field names, nesting, JSON dump style, file names, printf formats of
llama-perplexity); the values are chosen so the tests can recompute them independently.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

FIX = Path(__file__).parent / "fixtures"


def sha(s: str) -> str:
    return hashlib.sha256(s.encode("utf-8")).hexdigest()


# ---- lm-eval ---------------------------------------------------------------------------------
ARC = [  # question, choices, gold, per-choice log-likelihoods (ref model)
    ("What colour is a ripe plum usually?", ["green", "purple", "white", "blue"], 1,
     [-4.1, -2.2, -6.0, -3.9]),
    ("Which tool is used to cut paper?", ["spoon", "hammer", "scissors", "ladle"], 2,
     [-5.0, -4.4, -3.1, -6.2]),
    ("How many legs does a spider have?", ["six", "eight", "four", "ten"], 1,
     [-2.0, -2.5, -3.0, -4.0]),
    ("What do bees make?", ["honey", "milk", "silk thread", "wax paper"], 0,
     [-1.5, -5.5, -6.5, -7.0]),
    ("Which season follows winter?", ["autumn", "summer", "spring", "monsoon"], 2,
     [-3.3, -3.0, -3.2, -9.0]),
    ("What gas do plants take in?", ["oxygen", "carbon dioxide", "helium", "neon"], 1,
     [-2.9, -3.0, -7.5, -8.0]),
]
GSM = [  # question, gold answer, ref response, strict-match pick, flexible pick
    ("Tom has 3 boxes of 4 pens. How many pens?", "3*4=12 #### 12",
     "He has 3*4=12 pens. #### 12", "12", "12"),
    ("A cake is cut into 8 slices and 3 are eaten. How many are left?", "8-3=5 #### 5",
     "There are 5 slices left.", "[invalid]", "5"),
    ("Sam walks 2 km a day for 5 days. How far?", "2*5=10 #### 10",
     "He walks 12 km. #### 12", "12", "12"),
    ("Ann buys 6 apples and gives away 2. How many remain?", "6-2=4 #### 4",
     "She has 4 apples. #### 4", "4", "4"),
]
CODE = [  # prompt, 3 sampled completions, how many of them pass
    ("def add(a, b):\n    \"\"\"Return a + b.\"\"\"\n", ["    return a + b\n", "    return a - b\n",
                                                         "    return b + a\n"], 2),
    ("def is_even(n):\n    \"\"\"True if n is even.\"\"\"\n", ["    return n % 2 == 0\n",
                                                               "    return n % 2 == 0\n",
                                                               "    return n % 2 == 0\n"], 3),
    ("def last(xs):\n    \"\"\"Last element of xs.\"\"\"\n", ["    return xs[0]\n",
                                                              "    return xs[-1]\n",
                                                              "    return xs[1]\n"], 1),
]
FEWSHOT = ("Question: Lee has 2 bags of 5 marbles. How many marbles?\nAnswer: 2*5=10 #### 10\n\n")
DATE_NEW = "2025-06-01T10-00-00.123456"
DATE_OLD = "2025-05-01T09-00-00.000001"


def arc_doc(i: int) -> dict:
    q, choices, gold, _ = ARC[i]
    return {"id": f"Mercury_{7000 + i}", "question": q,
            "choices": {"text": choices, "label": ["A", "B", "C", "D"]},
            "answerKey": "ABCD"[gold]}


def arc_sample(i: int, lls: list[float], *, style: str) -> dict:
    q, choices, gold, _ = ARC[i]
    ctx = f"Question: {q}\nAnswer:"
    conts = [" " + c for c in choices]
    pred = max(range(4), key=lambda k: lls[k])
    pred_norm = max(range(4), key=lambda k: lls[k] / len(conts[k]))
    greedy = [k == pred for k in range(4)]
    doc = arc_doc(i)
    s: dict = {"doc_id": i, "doc": doc, "target": gold if style == "legacy" else str(gold)}
    if style == "legacy":
        s["arguments"] = [[ctx, c] for c in conts]
        s["resps"] = [[[lls[k], greedy[k]]] for k in range(4)]
        s["filtered_resps"] = [[lls[k], greedy[k]] for k in range(4)]
    else:
        s["arguments"] = {f"gen_args_{k}": {"arg_0": ctx, "arg_1": conts[k]} for k in range(4)}
        s["resps"] = [[[str(lls[k]), str(greedy[k])]] for k in range(4)]
        s["filtered_resps"] = [[str(lls[k]), str(greedy[k])] for k in range(4)]
    if style == "new":
        s["filter"] = "none"
        s["metrics"] = ["acc", "acc_norm"]
    if style != "legacy":
        s["doc_hash"] = sha(json.dumps(doc, indent=2, ensure_ascii=False))
        s["prompt_hash"] = sha(ctx)
        s["target_hash"] = sha(str(gold))
    s["acc"] = 1.0 if pred == gold else 0.0
    s["acc_norm"] = 1.0 if pred_norm == gold else 0.0
    return s


def gsm_samples(*, style: str) -> list[dict]:
    out = []
    for filt, pick in (("strict-match", 3), ("flexible-extract", 4)):
        for i, row in enumerate(GSM):
            q, answer, resp = row[0], row[1], row[2]
            ctx = FEWSHOT + f"Question: {q}\nAnswer:"
            gen = {"until": ["Question:", "</s>", "<|im_end|>"], "do_sample": False,
                   "temperature": 0.0}
            doc = {"question": q, "answer": answer}
            s: dict = {"doc_id": i, "doc": doc, "target": answer,
                       "arguments": {"gen_args_0": {"arg_0": ctx, "arg_1": gen}},
                       "resps": [[resp]], "filtered_resps": [row[pick]]}
            if style == "new":
                s["filter"] = filt
                s["metrics"] = ["exact_match"]
            s["doc_hash"] = sha(json.dumps(doc, indent=2, ensure_ascii=False))
            s["prompt_hash"] = sha(ctx)
            s["target_hash"] = sha(answer)
            s["exact_match"] = 1.0 if row[pick] == answer.split("#### ")[1] else 0.0
            out.append(s)
    return out


def code_samples() -> list[dict]:
    out = []
    for i, (prompt, comps, n_ok) in enumerate(CODE):
        doc = {"task_id": f"Mini/{i}", "prompt": prompt, "entry_point": prompt[4:prompt.index("(")]}
        target = f"assert {doc['entry_point']} is not None\ncheck({doc['entry_point']})"
        gen = {"until": ["\nclass", "\ndef"], "max_gen_toks": 256, "do_sample": True,
               "temperature": 0.8}
        out.append({"doc_id": i, "doc": doc, "target": target,
                    "arguments": {"gen_args_0": {"arg_0": prompt, "arg_1": gen}},
                    "resps": [comps], "filtered_resps": [[prompt + c for c in comps]],
                    "filter": "create_test", "metrics": ["pass@1"],
                    "doc_hash": sha(json.dumps(doc, indent=2, ensure_ascii=False)),
                    "prompt_hash": sha(prompt), "target_hash": sha(target),
                    "pass@1": n_ok / len(comps)})
    return out


def wiki_samples() -> list[dict]:
    text = "The quick brown fox jumps over the lazy dog."
    doc = {"page": text}
    return [{"doc_id": 0, "doc": doc, "target": text,
             "arguments": {"gen_args_0": {"arg_0": text}}, "resps": [["-31.5"]],
             "filtered_resps": ["-31.5"], "filter": "none",
             "metrics": ["word_perplexity", "byte_perplexity", "bits_per_byte"],
             "doc_hash": sha(json.dumps(doc, indent=2, ensure_ascii=False)),
             "prompt_hash": sha(text), "target_hash": sha(text),
             "word_perplexity": [-31.5, 9], "byte_perplexity": [-31.5, 44],
             "bits_per_byte": [-31.5, 44]}]


def mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def results_doc(samples: dict[str, list[dict]], *, version: str | None, model: str) -> dict:
    res, configs, versions, nshot, hib, nsamp = {}, {}, {}, {}, {}, {}
    for task, ss in samples.items():
        r: dict = {"alias": task}
        by_f: dict[str, list[dict]] = {}
        for s in ss:
            by_f.setdefault(s.get("filter", "none"), []).append(s)
        for f, fs in by_f.items():
            for m in ("acc", "acc_norm", "exact_match", "pass@1"):
                if m in fs[0]:
                    r[f"{m},{f}"] = mean([x[m] for x in fs])
                    r[f"{m}_stderr,{f}"] = 0.1
        res[task] = r
        cfg: dict = {"task": task, "dataset_path": f"made-up/{task}", "test_split": "test",
                     "num_fewshot": 5 if task.startswith("gsm") else 0,
                     "metadata": {"version": 1.0}}
        if task.startswith("gsm"):
            cfg["output_type"] = "generate_until"
            cfg["filter_list"] = [
                {"name": "strict-match", "filter": [
                    {"function": "regex", "regex_pattern": "#### (\\-?[0-9\\.\\,]+)"},
                    {"function": "take_first"}]},
                {"name": "flexible-extract", "filter": [
                    {"function": "regex", "group_select": -1,
                     "regex_pattern": "(-?[$0-9.,]{2,})|(-?[0-9]+)"},
                    {"function": "take_first"}]}]
        elif task.startswith("code"):
            cfg["output_type"] = "generate_until"
            cfg["repeats"] = 3
            cfg["filter_list"] = [{"name": "create_test", "filter": [
                {"function": "custom", "filter_fn": "<function build_predictions>"}]}]
        elif task.startswith("wiki"):
            cfg["output_type"] = "loglikelihood_rolling"
        else:
            cfg["output_type"] = "multiple_choice"
        configs[task] = cfg
        versions[task] = 3.0 if task.startswith("gsm") else 1.0
        nshot[task] = cfg["num_fewshot"]
        hib[task] = {k.split(",")[0]: True for k in r if "," in k and "stderr" not in k}
        nsamp[task] = {"original": len(ss), "effective": len({s["doc_id"] for s in ss})}
    out = {"results": res, "group_subtasks": {t: [] for t in samples}, "configs": configs,
           "versions": versions, "n-shot": nshot, "higher_is_better": hib, "n-samples": nsamp,
           "config": {"model": "hf", "model_args": f"pretrained=made-up/{model},dtype=float32",
                      "model_num_parameters": 1234567, "model_dtype": "torch.float32",
                      "batch_size": "4", "batch_sizes": [], "device": "cpu", "use_cache": None,
                      "limit": None, "bootstrap_iters": 100000, "gen_kwargs": None,
                      "random_seed": 0, "numpy_seed": 1234, "torch_seed": 1234,
                      "fewshot_seed": 1234},
           "git_hash": "0a1b2c3", "date": 1748772000.5}
    if version is not None:
        out.update({"pretty_env_info": "made up", "transformers_version": "4.55.0",
                    "lm_eval_version": version, "upper_git_hash": None})
    out["task_hashes"] = {t: sha("".join(s.get("doc_hash", "") + s.get("prompt_hash", "")
                                         + s.get("target_hash", "") for s in ss))
                          for t, ss in samples.items()}
    out.update({"model_source": "hf", "model_name": f"made-up/{model}",
                "model_name_sanitized": f"made-up__{model}", "system_instruction": None,
                "system_instruction_sha": None, "fewshot_as_multiturn": False,
                "chat_template": None, "chat_template_sha": None,
                "start_time": 1.0, "end_time": 2.0, "total_evaluation_time_seconds": "1.0"})
    return out


def write_jsonl(path: Path, samples: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for s in samples:
            fh.write(json.dumps(s, ensure_ascii=False) + "\n")


def write_results(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(doc, indent=2, ensure_ascii=False), encoding="utf-8")


def q4_lls(i: int) -> list[float]:
    """The quant's log-likelihoods: the reference's with a perturbation that flips doc 2."""
    lls = list(ARC[i][3])
    if i == 2:
        lls[1], lls[0] = -1.8, -2.6  # now right (ref picks 'six', wrong)
    if i == 3:
        lls[0] = -6.0  # now wrong
    return lls


def make_lm_eval() -> None:
    base = FIX / "lm_eval"
    for model, lls_of in (("ref", lambda i: ARC[i][3]), ("q4", q4_lls)):
        d = base / "v0.4.9" / model / f"made-up__{model}"
        arc = [arc_sample(i, lls_of(i), style="new") for i in range(len(ARC))]
        samples = {"arc_mini": arc, "gsm_mini": gsm_samples(style="new"),
                   "code_mini": code_samples(), "wiki_mini": wiki_samples()}
        write_results(d / f"results_{DATE_NEW}.json",
                      results_doc(samples, version="0.4.9", model=model))
        for task, ss in samples.items():
            write_jsonl(d / f"samples_{task}_{DATE_NEW}.jsonl", ss)
        if model == "ref":  # an older, partial run in the same folder: must be ignored
            old = [arc_sample(i, [-1.0, -9.0, -9.0, -9.0], style="new") for i in range(3)]
            write_results(d / f"results_{DATE_OLD}.json",
                          results_doc({"arc_mini": old}, version="0.4.8", model=model))
            write_jsonl(d / f"samples_arc_mini_{DATE_OLD}.jsonl", old)
    # v0.4.5: no "filter"/"metrics" keys; a multi-filter task logs each doc once per filter
    d = base / "v0.4.5" / "made-up__ref"
    samples = {"gsm_mini": gsm_samples(style="mid"),
               "arc_mini": [arc_sample(i, ARC[i][3], style="mid") for i in range(len(ARC))]}
    write_results(d / f"results_{DATE_NEW}.json", results_doc(samples, version=None, model="ref"))
    for task, ss in samples.items():
        write_jsonl(d / f"samples_{task}_{DATE_NEW}.jsonl", ss)
    # v0.4.0-0.4.2: <model_args>_<task>.jsonl holding a JSON array, next to results.json
    d = base / "v0.4.2"
    legacy = {"arc_mini": [arc_sample(i, ARC[i][3], style="legacy") for i in range(len(ARC))]}
    res = results_doc(legacy, version=None, model="ref")
    for k in ("task_hashes", "model_source", "model_name", "model_name_sanitized",
              "system_instruction", "system_instruction_sha", "fewshot_as_multiturn",
              "chat_template", "chat_template_sha", "start_time", "end_time",
              "total_evaluation_time_seconds", "higher_is_better", "n-samples"):
        res.pop(k, None)
    write_results(d / "results.json", res)
    (d / "pretrained__made-up__ref,dtype__float32_arc_mini.jsonl").write_text(
        json.dumps(legacy["arc_mini"], indent=2, ensure_ascii=False), encoding="utf-8")


# ---- LiveCodeBench ---------------------------------------------------------------------------
LCB = [  # question_id, title, content, graded per sample (ref), graded (q4)
    ("abc301_a", "Pair Sum", "Given N integers, print the number of pairs summing to K.",
     [True, True, False], [True, False, False]),
    ("abc301_b", "Echo", "Read a string S and print it twice.", [True, True, True],
     [True, True, True]),
    ("2891", "max-prefix", "Return the largest prefix sum of nums.", [False, False, True],
     [False, True, True]),
    ("1873_c", "Grid Walk", "Count the paths from the top-left to the bottom-right cell.",
     [False, False, False], [False, False, False]),
]


def lcb_entry(qid: str, title: str, content: str, graded: list[bool]) -> dict:
    codes = [f"# attempt {k}\nprint(input())" for k in range(len(graded))]
    return {"question_title": title, "question_content": content, "platform": "atcoder",
            "question_id": qid, "contest_id": qid.split("_")[0], "contest_date":
            "2023-09-02T00:00:00", "starter_code": "", "difficulty": "easy",
            "output_list": [f"```python\n{c}\n```" for c in codes], "code_list": codes,
            "graded_list": graded, "pass@1": graded.count(True) / len(graded),
            "metadata": ['{"error_code": -2, "error_message": "Wrong Answer"}'
                         if not g else "{}" for g in graded]}


def make_lcb() -> None:
    for model, col in (("ref", 3), ("q4", 4)):
        d = FIX / "livecodebench" / model
        d.mkdir(parents=True, exist_ok=True)
        entries = [lcb_entry(r[0], r[1], r[2], r[col]) for r in LCB]
        (d / "Scenario.codegeneration_3_0.2_eval_all.json").write_text(
            json.dumps(entries, indent=4))
    execution = [{"question_id": "abc301_a", "contest_id": "abc301",
                  "contest_date": "2023-09-02T00:00:00", "difficulty": "easy",
                  "function_name": "f", "code": "def f(x):\n    return x + 1", "input": "f(1)",
                  "output": "2", "id": f"sample_{k}", "problem_id": f"abc301_a_{k}",
                  "numsteps": 3, "output_list": ["2"], "pred_list": ["2" if k else "3"],
                  "graded_list": [k != 0], "pass@1": 1.0 if k else 0.0} for k in range(3)]
    (FIX / "livecodebench" / "ref" / "Scenario.codeexecution_1_0.2_eval_all.json").write_text(
        json.dumps(execution, indent=4))


# ---- evalplus --------------------------------------------------------------------------------
EP = {  # task -> [(base, plus)] per sample
    "HumanEval/0": [("pass", "pass"), ("pass", "fail")],
    "HumanEval/1": [("fail", "fail"), ("pass", "pass")],
    "HumanEval/2": [("timeout", None), ("fail", "fail")],
}


def make_evalplus() -> None:
    d = FIX / "evalplus"
    d.mkdir(parents=True, exist_ok=True)
    ev = {}
    for t, ss in EP.items():
        ev[t] = [{"task_id": t, "solution": f"def f():\n    return {k}\n",
                  "base_status": b, "plus_status": p if p is not None else "fail",
                  "base_fail_tests": [] if b == "pass" else [[1, 2]],
                  "plus_fail_tests": [] if p == "pass" else [[3]]} for k, (b, p) in enumerate(ss)]
    doc = {"date": "2025-06-01 10:00", "hash": "5a0fc1f0c2b1d3e4f5a6b7c8d9e0f1a2", "eval": ev,
           "pass_at_k": {"base": {"pass@1": 0.5}, "plus": {"pass@1": 0.3333333333333333}}}
    (d / "tiny-ref_temp_0.8.eval_results.json").write_text(json.dumps(doc))
    base_only = {"date": "2025-06-01 10:05", "hash": doc["hash"], "eval": {
        t: [{**s, "plus_status": None, "plus_fail_tests": []} for s in ss] for t, ss in ev.items()},
        "pass_at_k": {"base": {"pass@1": 0.5}}}
    (d / "base_only" / "eval_results.json").parent.mkdir(exist_ok=True)
    (d / "base_only" / "eval_results.json").write_text(json.dumps(base_only))
    old_map = {"pass": "success", "fail": "failed", "timeout": "timed out"}
    old = {"date": "2024-01-10 08:00", "hash": "c0ffee00c0ffee00c0ffee00c0ffee00", "eval": {
        f"Mbpp/{n}": {"nfiles": len(ss),
                      "base": [[old_map[b], [b == "pass"]] for b, _ in ss],
                      "plus": [[old_map[p or "fail"], [p == "pass"]] for _, p in ss]}
        for n, ss in zip((2, 3, 4), EP.values(), strict=True)}}
    (d / "v0.2.0").mkdir(exist_ok=True)
    (d / "v0.2.0" / "eval_results.json").write_text(json.dumps(old))


# ---- llama.cpp -------------------------------------------------------------------------------
KLD_CHUNKS = [  # running values printed after each chunk
    (9.8123, 0.2051, 0.00412, 0.00231, 0.01234, 0.00061, 3.112, 0.101, 95.312, 0.933),
    (9.9011, 0.1432, 0.00388, 0.00160, 0.01188, 0.00043, 3.051, 0.072, 95.508, 0.648),
    (9.8760, 0.1170, 0.00401, 0.00131, 0.01201, 0.00035, 3.077, 0.059, 95.443, 0.532),
]
KLD_STATS = {"ppl_q": (9.875961, 0.117012), "ppl_ref": (9.836512, 0.116500), "cor": 99.61,
             "ln_ratio": (0.004003, 0.001311), "ratio": (1.004011, 0.001316),
             "diff": (0.039449, 0.012950), "kld": (0.012012, 0.000351), "kld_max": 2.712345,
             "p999": 0.901234, "p99": 0.152345, "p95": 0.045678, "p90": 0.025432,
             "median": 0.004321, "p10": 0.000123, "p5": 0.000045, "p1": 0.000004,
             "p01": -0.000001, "min": -0.000012, "dp": (-0.112, 0.041), "rms_dp": (3.077, 0.059),
             "same": (95.443, 0.532)}


def kld_log(with_block: bool) -> str:
    s = KLD_STATS
    out = ["build: 6000 (abcdef12) with cc (made up) for x86_64-linux-gnu",
           "llama_model_loader: loaded meta data with 30 key-value pairs",
           "llama_context: constructing llama_context",
           "llama_context: n_seq_max     = 1",
           "llama_context: n_ctx         = 512",
           "llama_context: n_ctx_per_seq = 512",
           "llama_context: n_batch       = 512",
           "",
           "system_info: n_threads = 2 (n_threads_batch = 2) / 2 | CPU : SSE3 = 1 | ",
           "kl_divergence: 1.23 seconds per pass - ETA 0.05 minutes"]
    for i, r in enumerate(KLD_CHUNKS):
        out.append("")
        out.append("chunk             PPL               ln(PPL(Q)/PPL(base))          KL "
                   "Divergence              Δp RMS            Same top p")
        out.append(f"{i + 1:4d}    {r[0]:9.4f} ± {r[1]:9.4f}    {r[2]:10.5f} ± {r[3]:10.5f}"
                   f"    {r[4]:10.5f} ± {r[5]:10.5f}    {r[6]:6.3f} ± {r[7]:6.3f} %"
                   f"    {r[8]:6.3f} ± {r[9]:6.3f} %")
    out.append("")
    if with_block:
        out += [
            "====== Perplexity statistics ======",
            f"Mean PPL(Q)                   : {s['ppl_q'][0]:10.6f} ± {s['ppl_q'][1]:10.6f}",
            f"Mean PPL(base)                : {s['ppl_ref'][0]:10.6f} ± {s['ppl_ref'][1]:10.6f}",
            f"Cor(ln(PPL(Q)), ln(PPL(base))): {s['cor']:6.2f}%",
            f"Mean ln(PPL(Q)/PPL(base))     : {s['ln_ratio'][0]:10.6f} ± {s['ln_ratio'][1]:10.6f}",
            f"Mean PPL(Q)/PPL(base)         : {s['ratio'][0]:10.6f} ± {s['ratio'][1]:10.6f}",
            f"Mean PPL(Q)-PPL(base)         : {s['diff'][0]:10.6f} ± {s['diff'][1]:10.6f}",
            "",
            "====== KL divergence statistics ======",
            f"Mean    KLD: {s['kld'][0]:10.6f} ± {s['kld'][1]:10.6f}",
            f"Maximum KLD: {s['kld_max']:10.6f}",
            f"99.9%   KLD: {s['p999']:10.6f}",
            f"99.0%   KLD: {s['p99']:10.6f}",
            f"95.0%   KLD: {s['p95']:10.6f}",
            f"90.0%   KLD: {s['p90']:10.6f}",
            f"Median  KLD: {s['median']:10.6f}",
            f"10.0%   KLD: {s['p10']:10.6f}",
            f" 5.0%   KLD: {s['p5']:10.6f}",
            f" 1.0%   KLD: {s['p1']:10.6f}",
            f" 0.1%   KLD: {s['p01']:10.6f}",
            f"Minimum KLD: {s['min']:10.6f}",
            "",
            "====== Token probability statistics ======",
            f"Mean    Δp: {s['dp'][0]:6.3f} ± {s['dp'][1]:5.3f} %",
            "Maximum Δp: 88.123%",
            "99.9%   Δp: 40.456%",
            "99.0%   Δp: 12.789%",
            "95.0%   Δp:  4.321%",
            "90.0%   Δp:  2.100%",
            "75.0%   Δp:  0.300%",
            "Median  Δp: -0.001%",
            "25.0%   Δp: -0.400%",
            "10.0%   Δp: -2.600%",
            " 5.0%   Δp: -4.800%",
            " 1.0%   Δp: -13.500%",
            " 0.1%   Δp: -41.000%",
            "Minimum Δp: -90.250%",
            f"RMS Δp    : {s['rms_dp'][0]:6.3f} ± {s['rms_dp'][1]:5.3f} %",
            f"Same top p: {s['same'][0]:6.3f} ± {s['same'][1]:5.3f} %",
            ""]
    out += ["llama_perf_context_print:        load time =     123.45 ms", ""]
    return "\n".join(out)


WINO = [  # score 1, score 2, answer
    (-1.234567, -1.456789, 1), (-2.100000, -1.900000, 1), (-0.875000, -0.950000, 2),
    (-1.500000, -1.250000, 2), (-3.000000, -2.999000, 1), (-0.700000, -0.800000, 1),
]


def wino_log() -> str:
    out = ["winogrande_score : loaded 6 tasks from prompt.",
           "winogrande_score : tokenizing selected tasks",
           "winogrande_score : calculating winogrande score over selected tasks."]
    n_ok = 0
    for i, (s1, s2, ans) in enumerate(WINO):
        result = 1 if s1 > s2 else 2
        n_ok += result == ans
        out.append(f"{i + 1}\t{100.0 * n_ok / (i + 1):.4f}\t{s1:10.6f}  {s2:10.6f}  {result}  {ans}")
    out += ["", "llama_perf_context_print:        load time =     50.00 ms", ""]
    return "\n".join(out)


HELLA = [True, False, False, True, True]


def hella_log() -> str:
    out = ["hellaswag_score : loaded 5 tasks from prompt.",
           "hellaswag_score : selecting 5 randomized tasks.",
           "hellaswag_score : calculating hellaswag score over selected tasks.", "",
           "task\tacc_norm\t95% confidence interval"]
    acc = 0
    for i, ok in enumerate(HELLA):
        acc += ok
        freq = acc / (i + 1)
        za = 1.95996398454
        z = za * za / (i + 1)
        cnf = z * math.sqrt((i + 1) * (4.0 * freq * (1 - freq) + z)) / (za + za)
        a, b = (freq + z * 0.5 - cnf) / (1.0 + z), (freq + z * 0.5 + cnf) / (1.0 + z)
        out.append(f"{i + 1}\t{freq * 100:3.8f}%\t[{a * 100:3.4f}%, {b * 100:3.4f}%]")
    out += ["", ""]
    return "\n".join(out)


def make_llamacpp() -> None:
    d = FIX / "llamacpp"
    d.mkdir(parents=True, exist_ok=True)
    (d / "kld_q4.log").write_text(kld_log(True), encoding="utf-8")
    (d / "kld_short_q4.log").write_text(kld_log(False), encoding="utf-8")
    (d / "winogrande_ref.log").write_text(wino_log(), encoding="utf-8")
    (d / "hellaswag_ref.log").write_text(hella_log(), encoding="utf-8")


# ---- table -----------------------------------------------------------------------------------
def make_table() -> None:
    d = FIX / "table"
    d.mkdir(parents=True, exist_ok=True)
    (d / "results.csv").write_text(
        "item,ok,pscore,task,model\n"
        "p1,pass,1.0,quiz,ref\np2,FAIL,0.0,quiz,ref\np3,1,1.0,quiz,ref\np4,false,0.0,quiz,ref\n"
        "p1,pass,1.0,quiz,q4\np2,pass,1.0,quiz,q4\np3,0,0.0,quiz,q4\np4,False,0.0,quiz,q4\n",
        encoding="utf-8")
    rows = [{"prompt_id": "a", "score": 0.75, "samples": 4, "prompt": "2+2?"},
            {"prompt_id": "b", "score": 0.25, "samples": 4, "prompt": "3+5?"},
            {"prompt_id": "c", "score": 0.5, "samples": 4, "prompt": "7*6?"}]
    (d / "scores.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    (d / "bad.csv").write_text("prompt_id,passed\nx1,yes\nx2,maybe\n", encoding="utf-8")


if __name__ == "__main__":
    make_lm_eval()
    make_lcb()
    make_evalplus()
    make_llamacpp()
    make_table()
