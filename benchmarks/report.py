"""Tables and pass/fail lines for bench_vs_lm_eval.py (Markdown, printed and written to bench.md)."""
from __future__ import annotations

import os
import platform

BARS = {"metric_rel": 1e-4, "speed": 1.5, "wikitext_rss": 0.5, "mfu_float32": 0.75}


def machine() -> dict:
    cpu = ""
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch
    return {"cpu": cpu or platform.processor(), "cores": os.cpu_count(), "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(), "python": platform.python_version()}


def _metrics(run: dict) -> str:
    return ", ".join(f"{k}={v:.10g}" for k, v in run["metrics"].items())


def _evals(run: dict) -> str:
    """The kept (fastest) evaluation time, and every try's when there were several."""
    tries = run.get("eval_s_all", [])
    return f"{run['eval_s']:.1f}" + (f" ({', '.join(f'{t:.1f}' for t in tries)})" if len(tries) > 1 else "")


def _around(run: dict) -> str:
    """MFU against the mean of the peaks measured just before and just after the run."""
    if "mfu_around" not in run:
        return "-"
    return f"{run['mfu_around']:.0%} ({(run['peak_flops_before'] + run['peak_flops_after']) / 2e9:.0f})"


def one_line(run: dict) -> str:
    return (f"{run['harness']:8s} {run['dtype']:8s} eval {run['eval_s']:.1f} s, process {run['process_s']:.1f} s, "
            f"{run['tokens_per_s']:.0f} tok/s, RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB, MFU {run['mfu']:.0%} "
            f"(around the run {run['mfu_around']:.0%}), "
            f"{_metrics(run)} (other processes: {run['others_cores']:.2f} cores)")


def _find(runs, workload, harness, dtype):
    return next((r for r in runs if (r["workload"], r["harness"], r["dtype"]) == (workload, harness, dtype)), None)


def _all(runs, workload, harness, dtype):
    return [r for r in runs if (r["workload"], r["harness"], r["dtype"]) == (workload, harness, dtype)]


def _rel(a: float, b: float) -> float:
    return abs(a - b) / abs(b) if b else abs(a - b)


def compare(a: dict, b: dict) -> dict:
    """How far run a's numbers are from run b's."""
    shared = [k for k in a["metrics"] if k in b["metrics"]]
    return {"metric_rel": max((_rel(a["metrics"][k], b["metrics"][k]) for k in shared), default=float("nan")),
            "doc_rel": max((_rel(x, y) for x, y in zip(a["per_doc"], b["per_doc"])), default=0.0),
            "decisions_changed": sum(x != y for x, y in zip(a["decisions"], b["decisions"])),
            "speed": a["tokens_per_s"] / b["tokens_per_s"], "speed_process": b["process_s"] / a["process_s"],
            "rss": a["peak_rss_bytes"] / b["peak_rss_bytes"]}


def _ok(flag: bool) -> str:
    return "met" if flag else "MISSED"


def _bar_row(wl: str, ours: dict, theirs: dict) -> str:
    c = compare(ours, theirs)
    bars = [f"metrics {_ok(c['metric_rel'] <= BARS['metric_rel'])}", f"speed {_ok(c['speed'] >= BARS['speed'])}"]
    if wl == "wikitext":
        bars.append(f"RSS {_ok(c['rss'] <= BARS['wikitext_rss'])}")
    bars.append(f"MFU≥75% against the best peak {_ok(ours['mfu'] >= BARS['mfu_float32'])} ({ours['mfu']:.0%}), "
                f"against the peak around the run {_ok(ours['mfu_around'] >= BARS['mfu_float32'])} "
                f"({ours['mfu_around']:.0%})")
    return (f"| {wl} | {theirs['batch_size']} | {c['speed']:.2f}× | {c['speed_process']:.2f}× | {c['rss']:.2f} "
            f"| {c['metric_rel']:.1e} | {c['doc_rel']:.1e} | {c['decisions_changed']} | {'; '.join(bars)} |")


def render(s: dict) -> str:
    runs, m = s["runs"], s["machine"]
    ceilings = s.get("gemm_ceiling_flops", {})
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads). "
           "Peak torch.mm (best in the run): " + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in s["peaks_flops"].items())
           + ". The model's own matmul shapes: " + ", ".join(
               f"{d} {c / 1e9:.0f} GFLOP/s ({c / s['peaks_flops'][d]:.0%} of peak: the MFU ceiling)"
               for d, c in ceilings.items()) + ".",
           "", "| workload | harness | dtype | tokens | eval s | process s | tokens/s | peak RSS GiB | MFU (best peak GFLOP/s) "
           "| MFU around (peak GFLOP/s) | metrics | other load (cores) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|---:|"]
    for r in runs:
        out.append(f"| {r['workload']} (n={r['n']}) | {r['harness']} (bs {r['batch_size']}) | {r['dtype']} "
                   f"| {r['tokens']:,} | {_evals(r)} | {r['process_s']:.1f} | {r['tokens_per_s']:.0f} "
                   f"| {r['peak_rss_bytes'] / 2**30:.2f} | {r['mfu']:.0%} ({r['peak_flops'] / 1e9:.0f}) | {_around(r)} | {_metrics(r)} "
                   f"| {r['others_cores']:.2f} |")
    out += ["", "gpt2eval float32 against lm-eval float32 (each lm-eval batch size):", "",
            "| workload | lm-eval bs | tokens/s ratio | process-time ratio | RSS gpt2eval/lm-eval | metric max rel. diff "
            "| per-document max rel. diff | decisions differing | bars |", "|---|---|---:|---:|---:|---:|---:|---:|---|"]
    for wl in dict.fromkeys(r["workload"] for r in runs):
        ours = _find(runs, wl, "gpt2eval", "float32")
        for theirs in _all(runs, wl, "lm_eval", "float32") if ours else []:
            out.append(_bar_row(wl, ours, theirs))
    bf = [r for r in runs if r["harness"] == "gpt2eval" and r["dtype"] != "float32"]
    if bf:
        out += ["", "gpt2eval in lower precision, on the same data:", "",
                "| workload | dtype | speed-up vs gpt2eval float32 | vs fastest lm-eval float32 | metric max rel. change "
                "| per-document max rel. change | accuracy decisions changed |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in bf:
            ref = _find(runs, r["workload"], "gpt2eval", "float32")
            theirs = max(_all(runs, r["workload"], "lm_eval", "float32"), key=lambda x: x["tokens_per_s"], default=None)
            if not ref:
                continue
            c = compare(r, ref)
            vs = f"{r['tokens_per_s'] / theirs['tokens_per_s']:.2f}×" if theirs else "-"
            out.append(f"| {r['workload']} | {r['dtype']} | {c['speed']:.2f}× | {vs} | {c['metric_rel']:.1e} "
                       f"| {c['doc_rel']:.1e} | {c['decisions_changed']} of {len(r['decisions'])} |")
    if s.get("generation"):
        out += ["", render_generation(s["generation"])]
    out += ["", f"1-minute load average before the first run: {s['load_at_start'][0]:.2f}; at the end: "
            f"{s['load_at_end'][0]:.2f} (the benchmark's own process counts about 2 on this 2-core machine). "
            "'other load': CPU cores kept busy by other processes during the run (/proc/stat minus the run's "
            "own CPU time); near 0 means the timing is clean.", "",
            DEFINITIONS]
    return "\n".join(out)


DEFINITIONS = """Definitions. tokens: GPT-2 tokens of the requests' text, counted once for both harnesses
(LAMBADA: context + target word; WikiText: the de-tokenized article). tokens/s: tokens / eval s, where
eval s runs from the loaded model to the computed metrics (process s adds interpreter start and model
load); with --repeat, the fastest try is kept and every try is listed. MFU: useful forward FLOPs /
eval s / peak, the same FLOPs for both harnesses: 2 x non-embedding parameters x tokens forwarded
+ 4 x d x n_layer x causal (query, key) pairs + 2 x d x 50257 x positions that need a log-probability
(gpt2eval.cli.plan.forward_flops); peak: the best torch.mm of 2048^2 and 4096^2 matrices in that dtype
over every measurement of the run (at the start, and before and after each run). MFU around: the
same FLOPs / eval s over the mean of the peaks measured just before and just after that run (a
virtual machine's speed drifts over minutes). MFU ceiling: the FLOP/s of
the model's own matmul shapes alone over that peak. Peak RSS: the process's
maximum resident set (wait4 rusage). With a random model every LAMBADA target misses (acc 0), so the
accuracy decisions cannot change; the per-document log-likelihood deviation is the informative number."""


def render_generation(g: dict) -> str:
    out = [f"Generation ({g.get('source', '')}; {g.get('dtype', '')}; process peak RSS "
           f"{g['peak_rss_bytes'] / 2**30:.2f} GiB; other processes {g['others_cores']:.2f} cores):", "",
           "| workload | variant | requests | prefill tokens | generated tokens | wall s | generated tok/s "
           "| outputs identical to the first variant |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in g["rows"]:
        out.append(f"| {row['workload']} | {row['variant']} | {row['requests']} | {row['prefill_tokens']:,} "
                   f"| {row['generated_tokens']:,} | {row['wall_s']:.2f} | {row['generated_tokens'] / row['wall_s']:.1f} "
                   f"| {row.get('same_outputs', '')} |")
    return "\n".join(out)
