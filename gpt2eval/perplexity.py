"""Shared machinery of the language-modelling perplexity tasks (PTB, WikiText-2, WikiText-103).

The paper's protocol, as far as it is known: de-tokenize the test file with an invertible
de-tokenizer, score it as one stream with the model's full window, and normalise the total NLL by
the number of ORIGINAL dataset tokens (whitespace tokens + one <eos> per line), which is
exp(total NLL / original tokens). The windows are not stated in the paper; disjoint 1024-token
windows (stride = window) are the default, and `stride` names the choice.

An example is one line of the file, so --limit N scores the first N lines as one stream.
"""
from __future__ import annotations

import hashlib
import math
from bisect import bisect_right

from .data import KNOWN_SHA256, Dataset, read_text, sha256_text, text_from_hub_lines
from .detokenize import count_original_tokens
from .requests import RollingLoglikelihood
from .task import Metric, Scored, Task
from .uncertainty import ratio


# The part of the protocol every perplexity task shares; plugins add their de-tokenizer's entries.
STREAM_PROTOCOL = {"windows": "one stream, disjoint 1024-token windows, first token after <|endoftext|>",
                   "normalisation": "exp(total NLL / original tokens incl. one <eos> per line)"}


class PerplexityTask(Task):
    relpath: str = ""                # the upstream file under --data-dir
    hub: tuple[str, str, str] = ("", "", "")  # (dataset, config, split) when no local file
    n_lines: int = 0                 # lines of the full test file
    stride: int | None = None        # None: disjoint windows of the full context

    @staticmethod
    def detokenize(text: str) -> str:
        raise NotImplementedError

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            cls.metrics = {
                "ppl": Metric(f"{cls.name}/ppl", "per original dataset token (paper)", False),
                "token_ppl": Metric(None, "per GPT-2 token", False),
                "bits_per_byte": Metric(None, "per UTF-8 byte of the de-tokenized text", False),
            }

    def load(self, data):
        path = data.find(self.relpath)
        if path:
            text, source = read_text(path), data.file_source(path, self.relpath)
        else:
            text, source = self.hub_text(data)
            digest = sha256_text(text)
            source.update(sha256=digest, verified=digest == KNOWN_SHA256.get(self.relpath))
        lines = text.splitlines(keepends=True)
        detok = self.detokenize(text).splitlines(keepends=True)
        assert len(detok) == len(lines), "a de-tokenizer must keep the line structure"
        return Dataset(list(zip(lines, detok)), n_full=self.n_lines, source=source)

    def hub_text(self, data) -> tuple[str, dict]:
        """The upstream file rebuilt from the hub's rows (its SHA-256 is then checked by `load`)."""
        dataset, config, split = self.hub
        rows = data.hub(dataset, config, split)
        return text_from_hub_lines(rows), data.hub_source(dataset, config, split, rows)

    def requests(self, examples):
        return [RollingLoglikelihood("".join(d for _, d in examples), stride=self.stride)]

    def score(self, examples, results):
        result = results[0]
        text = "".join(d for _, d in examples)
        line_starts, pos = [], 0
        for _, d in examples:
            line_starts.append(pos)
            pos += len(d)
        nll_by_line, tokens_by_line = [0.0] * len(examples), [0] * len(examples)
        for lp, start in zip(result.token_logprobs, result.token_starts):
            i = bisect_right(line_starts, start) - 1  # a token belongs to the line where it starts
            nll_by_line[i] -= lp
            tokens_by_line[i] += 1
        n_orig = sum(count_original_tokens(o) for o, _ in examples)
        nll = -result.logprob
        samples = [{"line": i, "text": d[:80], "sha256": hashlib.sha256(d.encode()).hexdigest()[:16],
                    "original_tokens": count_original_tokens(o), "gpt2_tokens": t, "nll": n}
                   for i, ((o, d), t, n) in enumerate(zip(examples, tokens_by_line, nll_by_line))]
        metrics = {"ppl": math.exp(nll / n_orig), "token_ppl": math.exp(nll / result.n_tokens),
                   "bits_per_byte": nll / math.log(2) / len(text.encode("utf-8"))}
        extra = {"original_tokens": n_orig, "gpt2_tokens": result.n_tokens, "bytes": len(text.encode("utf-8")),
                 "total_nll": nll, "token_ratio": result.n_tokens / n_orig}
        nlls, lines = [s["nll"] for s in samples], "line of the test file"  # intervals: lines resampled
        spread = {"ppl": ratio(nlls, [s["original_tokens"] for s in samples], math.exp, lines),
                  "token_ppl": ratio(nlls, [s["gpt2_tokens"] for s in samples], math.exp, lines),
                  "bits_per_byte": ratio([x / math.log(2) for x in nlls], [len(d.encode()) for _, d in examples],
                                         unit=lines)}
        return Scored(metrics, samples, extra=extra, spread=spread, pairs=[("ppl", "token_ppl")])
