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


def one_line(run: dict) -> str:
    return (f"{run['harness']:8s} {run['dtype']:8s} eval {run['eval_s']:.1f} s, process {run['process_s']:.1f} s, "
            f"{run['tokens_per_s']:.0f} tok/s, RSS {run['peak_rss_bytes'] / 2**30:.2f} GiB, MFU {run['mfu']:.0%}, "
            f"{_metrics(run)} (load {run['load_before']:.2f}->{run['load_after']:.2f})")


def _find(runs, workload, harness, dtype):
    return next((r for r in runs if (r["workload"], r["harness"], r["dtype"]) == (workload, harness, dtype)), None)


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


def render(s: dict) -> str:
    runs, m = s["runs"], s["machine"]
    out = [f"Machine: {m['cpu']}, {m['cores']} cores, torch {m['torch']} ({m['torch_threads']} threads). "
           "Peak torch.mm: " + ", ".join(f"{d} {p / 1e9:.0f} GFLOP/s" for d, p in s["peaks_flops"].items()) + ".",
           "", "| workload | harness | dtype | tokens | eval s | process s | tokens/s | peak RSS GiB | MFU | metrics "
           "| load 1-min (before→after) |", "|---|---|---|---:|---:|---:|---:|---:|---:|---|---|"]
    for r in runs:
        out.append(f"| {r['workload']} (n={r['n']}) | {r['harness']} (bs {r['batch_size']}) | {r['dtype']} "
                   f"| {r['tokens']:,} | {r['eval_s']:.1f} | {r['process_s']:.1f} | {r['tokens_per_s']:.0f} "
                   f"| {r['peak_rss_bytes'] / 2**30:.2f} | {r['mfu']:.0%} | {_metrics(r)} "
                   f"| {r['load_before']:.2f}→{r['load_after']:.2f} |")
    out += ["", "gpt2eval float32 against lm-eval float32:", "",
            "| workload | tokens/s ratio | process-time ratio | RSS gpt2eval/lm-eval | metric max rel. diff "
            "| per-document max rel. diff | decisions differing | bars |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    for wl in dict.fromkeys(r["workload"] for r in runs):
        ours, theirs = _find(runs, wl, "gpt2eval", "float32"), _find(runs, wl, "lm_eval", "float32")
        if not (ours and theirs):
            continue
        c = compare(ours, theirs)
        bars = [f"metrics {_ok(c['metric_rel'] <= BARS['metric_rel'])}", f"speed {_ok(c['speed'] >= BARS['speed'])}"]
        if wl == "wikitext":
            bars.append(f"RSS {_ok(c['rss'] <= BARS['wikitext_rss'])}")
        bars.append(f"MFU≥75% {_ok(ours['mfu'] >= BARS['mfu_float32'])} ({ours['mfu']:.0%})")
        out.append(f"| {wl} | {c['speed']:.2f}× | {c['speed_process']:.2f}× | {c['rss']:.2f} | {c['metric_rel']:.1e} "
                   f"| {c['doc_rel']:.1e} | {c['decisions_changed']} | {'; '.join(bars)} |")
    bf = [r for r in runs if r["harness"] == "gpt2eval" and r["dtype"] != "float32"]
    if bf:
        out += ["", "gpt2eval in lower precision, on the same data:", "",
                "| workload | dtype | speed-up vs gpt2eval float32 | vs lm-eval float32 | metric max rel. change "
                "| per-document max rel. change | accuracy decisions changed |", "|---|---|---:|---:|---:|---:|---:|"]
        for r in bf:
            ref, theirs = _find(runs, r["workload"], "gpt2eval", "float32"), _find(runs, r["workload"], "lm_eval", "float32")
            if not ref:
                continue
            c = compare(r, ref)
            vs = f"{r['tokens_per_s'] / theirs['tokens_per_s']:.2f}×" if theirs else "-"
            out.append(f"| {r['workload']} | {r['dtype']} | {c['speed']:.2f}× | {vs} | {c['metric_rel']:.1e} "
                       f"| {c['doc_rel']:.1e} | {c['decisions_changed']} of {len(r['decisions'])} |")
    if s.get("generation"):
        out += ["", render_generation(s["generation"])]
    out += ["", f"Load average at the end: {s['load_at_end'][0]:.2f}."]
    return "\n".join(out)


def render_generation(g: dict) -> str:
    out = [f"Generation ({g.get('source', '')}; process peak RSS {g['peak_rss_bytes'] / 2**30:.2f} GiB, "
           f"load {g['load_before']:.2f}→{g['load_after']:.2f}):", "",
           "| workload | variant | requests | prefill tokens | generated tokens | wall s | generated tok/s "
           "| outputs identical to the first variant |", "|---|---|---:|---:|---:|---:|---:|---|"]
    for row in g["rows"]:
        out.append(f"| {row['workload']} | {row['variant']} | {row['requests']} | {row['prefill_tokens']:,} "
                   f"| {row['generated_tokens']:,} | {row['wall_s']:.2f} | {row['generated_tokens'] / row['wall_s']:.1f} "
                   f"| {row.get('same_outputs', '')} |")
    return "\n".join(out)
