"""gpt2eval: reproduce GPT-2's zero-shot results, and score your own GPT-2 the same way.

From Python (a training loop): `gpt2eval.evaluate(model, tasks, ...)` and `gpt2eval.plan(model,
tasks, ...)`, both in gpt2eval/library.py. They are imported when first called, so that
`import gpt2eval` stays light (no torch).
"""
__version__ = "0.2.0"


def evaluate(model, tasks, *, tokenizer=None, data_dir=None, limit=None, batch_size="auto", device=None,
             dtype=None, cache=None, output=None, progress=True, step=None) -> dict:
    """Score `model` on `tasks`; returns a dict shaped like results.json: ["tasks"][name]["metrics"]
    [metric], with ["intervals"] beside the metrics, and ["model"] describing what was scored.

    model: a checkpoint path (nanoGPT ckpt.pt, llm.c model_*.bin), a model folder or hub id, a
    transformers model, or a nanoGPT/llm.c-style `GPT` module (transformer.wte/wpe/h/ln_f and
    lm_head), scored as its own forward scores it and left as it was found (parameters, train/eval
    mode, device). tasks: names ("lambada,wikitext2" or a list) or Task objects. tokenizer: a
    folder, hub id or tokenizer object (default: a folder's own, else GPT-2's). device, dtype: None
    keeps a module's own ("auto" and float32 for a path). cache: a result-cache file to reuse
    answers from (None: no cache). output: a folder for results.json, samples and comparison.csv
    (None: no file is written). step: the training step, recorded as results["model"]["step"]
    (a checkpoint's own step otherwise). Bad input raises gpt2eval.errors.UserError."""
    from .library import evaluate as run
    return run(model, tasks, tokenizer=tokenizer, data_dir=data_dir, limit=limit, batch_size=batch_size,
               device=device, dtype=dtype, cache=cache, output=output, progress=progress, step=step)


def plan(model, tasks, *, tokenizer=None, data_dir=None, limit=None, peak_tflops=None, measure_peak=False,
         dtype="float32") -> dict:
    """What `evaluate(model, tasks, ...)` will cost, from the tokenizer, the data and the model's shape
    (no forward pass): {"model", "shape", "rows" (per task: tokens, FLOPs, times), "flops",
    "seconds" (FLOPs at peak), "bound_seconds" (decoding counted memory-bound)} per device peak:
    peak_tflops (default an H100's bf16 989) and, with measure_peak, this machine's matmul peak."""
    from .library import plan as price
    return price(model, tasks, tokenizer=tokenizer, data_dir=data_dir, limit=limit, peak_tflops=peak_tflops,
                 measure_peak=measure_peak, dtype=dtype)
