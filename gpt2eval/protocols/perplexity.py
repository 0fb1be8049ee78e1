"""Shared machinery of the language-modelling perplexity tasks (PTB, WikiText-2, WikiText-103).

The paper's protocol, as far as it is known: de-tokenize the test file with an invertible
de-tokenizer, score it as one stream with the model's full window, and normalise the total NLL by
the number of ORIGINAL dataset tokens (whitespace tokens + one <eos> per line), which is
exp(total NLL / original tokens). The windows are not stated in the paper; disjoint 1024-token
windows are the default.

An example is one line of the file, so --limit N scores the first N lines as one stream. The task
asks for {"stream": RollingLoglikelihood(the lines joined)} and scores the answer under that name.

Options (`--tasks wikitext103:stride=256,detokenize=none`), each a protocol choice the paper does
not settle, recorded in the protocol and part of the task's key; every one keeps the paper row:
- stride: overlapping windows (gpt2eval.protocols.windows).
- detokenize: `paper` (ours, the default: gpt2eval.protocols.detokenize), `none` (the file as it
  is; the normalisation by original tokens still applies) or `megatron` (Megatron-LM's public rules,
  which lm-evaluation-harness's wikitext uses: gpt2eval.protocols.detokenize_megatron).
- streams (WikiText): `file` (one stream, the default) or `article`: every article is its own
  stream, its first token conditioned on <|endoftext|>, as lm-evaluation-harness
  (wikitext_document_level) and HELM score WikiText. An article starts at a top-level heading,
  lm-eval's rule: the line, with "= = =" -> "===" and "= =" -> "==" and stripped, starts with "= "
  and ends with " =". The WikiText test file has 60 articles but 62 such lines: two are formula
  lines of "Constant k filter" (" = 1 henry and capacitance C = "), so lm-eval's split, kept here,
  has 62 streams. Lines before the first heading (one blank line) join the first article. An
  example is then an article, so --limit N scores the first N articles; the task asks for
  {"article": [one RollingLoglikelihood per article]}. The normalisation is unchanged.
Metric beside ppl: word_ppl, exp(total NLL / original words WITHOUT the <eos> per line), the
denominator of lm-evaluation-harness's word_perplexity (it splits each raw page at runs of
whitespace, which also counts the empty pieces at a page's edges: a few words more). WikiText
test: 241,211 words against 245,569 tokens with <eos>; on one total NLL, gpt2's 37.37 per lm-eval
word on WikiText-103 is about 35.1 per token with <eos> (37.37 ** (241,211 / 245,569)). Compared
with the same paper row as ppl. Every sample row carries its NLL, GPT-2 tokens, original tokens and
words, so each metric can be recomputed from the rows.
"""
from __future__ import annotations

import hashlib
import math
from typing import Callable

from ..api.data import KNOWN_SHA256, Dataset, read_text, sha256_text, text_from_hub_lines
from .detokenize import count_original_tokens
from ..api.requests import RollingLoglikelihood
from ..api.task import Metric, Option, Scored, Task
from ..api.uncertainty import ratio, safe_exp
from .windows import STRIDE, check_stride, windows


DETOKENIZE = Option("paper", "paper: ours (gpt2eval.protocols.detokenize); none: the file as it is; megatron: "
                             "Megatron-LM's public zero-shot rules, line by line (lm-evaluation-harness's wikitext "
                             "uses its WikiText ones)", choices=("paper", "none", "megatron"))
STREAMS = Option("file", "file: the whole test file as one stream; article: each article its own stream, as "
                         "lm-evaluation-harness and HELM score WikiText", choices=("file", "article"))
NORMALISATION = "exp(total NLL / original tokens incl. one <eos> per line)"
ARTICLES = ("a line that is ' = Title = ' after '= = =' -> '===', '= =' -> '==' and strip "
            "(lm-eval's wikitext_document_level rule) starts an article")


def is_article_heading(line: str) -> bool:
    """lm-eval's article boundary: a top-level ` = Title = ` heading, not ` = = Section = = `."""
    rline = line.replace("= = =", "===").replace("= =", "==").strip()
    return rline.startswith("= ") and rline.endswith(" =")


def split_articles(pairs: list[tuple[str, str]]) -> list[tuple[tuple[str, str], ...]]:
    """(original, de-tokenized) lines grouped into articles; leading lines join the first one."""
    articles: list[list] = []
    seen_heading = False
    for pair in pairs:
        heading = is_article_heading(pair[0])
        if not articles or (heading and seen_heading):
            articles.append([])
        seen_heading |= heading
        articles[-1].append(pair)
    return [tuple(a) for a in articles]


def count_words(text: str) -> int:
    """Original whitespace tokens, without <eos>."""
    return len(text.split())


class PerplexityTask(Task):
    relpath: str = ""                # the upstream file under --data-dir
    hub: tuple[str, str, str] = ("", "", "")  # (dataset, config, split) when no local file
    n_lines: int = 0                 # lines of the full test file
    n_articles: int = 0              # articles by lm-eval's rule (streams=article)
    detokenizers: dict[str, Callable[[str], str] | None] = {}  # detokenize option -> function; None: as it is
    base_protocol: dict[str, str] = {}  # the plugin's entries beside de-tokenizer, windows and normalisation
    options = {"stride": STRIDE, "detokenize": DETOKENIZE}

    def __init__(self, **settings):
        super().__init__(**settings)
        check_stride(self.name, self.stride)

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            ref = f"{cls.name}/ppl"
            cls.metrics = {
                "ppl": Metric(ref, "per original dataset token incl. one <eos> per line (paper)", False),
                "word_ppl": Metric(ref, "per original word, no <eos> (lm-eval's word_perplexity denominator)", False),
                "token_ppl": Metric(None, "per GPT-2 token", False),
                "bits_per_byte": Metric(None, "per UTF-8 byte of the de-tokenized text", False),
            }

    @property
    def per_article(self) -> bool:
        """streams=article: one stream per article (n_articles examples), not one per file."""
        return self.settings.get("streams") == "article"

    def detokenizer(self) -> Callable[[str], str] | None:
        """The function the options choose (None: the file as it is); it must keep the line count."""
        return self.detokenizers[self.detokenize]

    @property
    def protocol(self) -> dict[str, str]:
        fn = self.detokenizer()
        streams = "one stream per article (lm-eval / HELM)" if self.per_article else "one stream"
        first = "each article's first token" if self.per_article else "first token"
        out = {"detokenizer": f"{fn.__module__}.{fn.__qualname__}" if fn else "none: the file as it is",
               **self.base_protocol, "windows": f"{streams}, {windows(self.stride)}, {first} after <|endoftext|>"}
        if self.per_article:
            out["articles"] = ARTICLES
        return {**out, "normalisation": NORMALISATION}

    def load(self, data):
        path = data.find(self.relpath)
        if path:
            text, source = read_text(path), data.file_source(path, self.relpath)
        else:
            text, source = self.hub_text(data)
            digest = sha256_text(text)
            source.update(sha256=digest, verified=digest == KNOWN_SHA256.get(self.relpath))
        lines = text.splitlines(keepends=True)
        detok = (self.detokenizer() or (lambda t: t))(text).splitlines(keepends=True)
        assert len(detok) == len(lines), "a de-tokenizer must keep the line structure"
        if self.per_article:
            return Dataset(split_articles(list(zip(lines, detok))), n_full=self.n_articles, source=source)
        return Dataset(list(zip(lines, detok)), n_full=self.n_lines, source=source)

    def hub_text(self, data) -> tuple[str, dict]:
        """The upstream file rebuilt from the hub's rows (its SHA-256 is then checked by `load`)."""
        dataset, config, split = self.hub
        rows = data.hub(dataset, config, split)
        return text_from_hub_lines(rows), data.hub_source(dataset, config, split, rows)

    def stream_lines(self, examples) -> list[list[tuple[str, str]]]:
        """The (original, de-tokenized) lines of each scored stream."""
        return [list(a) for a in examples] if self.per_article else [examples]

    def requests(self, examples):
        streams = [RollingLoglikelihood("".join(d for _, d in lines), stride=self.stride)
                   for lines in self.stream_lines(examples)]
        return {"article": streams} if self.per_article else {"stream": streams[0]}

    def score(self, examples, answers):
        results = answers["article"] if self.per_article else [answers["stream"]]
        per_line = []  # (original, de-tokenized, nll, gpt2 tokens) for every line of every stream
        for lines, result in zip(self.stream_lines(examples), results, strict=True):
            nll_by_line, tokens_by_line = result.by_piece([d for _, d in lines])
            per_line.append([(o, d, n, t) for (o, d), n, t in zip(lines, nll_by_line, tokens_by_line)])
        samples = [self.sample(i, rows) for i, rows in enumerate(per_line if self.per_article else per_line[0])]
        nll = sum(s["nll"] for s in samples)
        n_orig, n_words = sum(s["original_tokens"] for s in samples), sum(s["words"] for s in samples)
        n_tokens, n_bytes = sum(s["gpt2_tokens"] for s in samples), sum(s["bytes"] for s in samples)
        metrics = {"ppl": safe_exp(nll / n_orig), "word_ppl": safe_exp(nll / n_words),
                   "token_ppl": safe_exp(nll / n_tokens), "bits_per_byte": nll / math.log(2) / n_bytes}
        extra = {"original_tokens": n_orig, "words": n_words, "gpt2_tokens": n_tokens, "bytes": n_bytes,
                 "total_nll": nll, "token_ratio": n_tokens / n_orig, "streams": len(results)}
        unit = "article" if self.per_article else "line of the test file"  # intervals: these resampled
        nlls, col = [s["nll"] for s in samples], lambda k: [s[k] for s in samples]  # noqa: E731
        spread = {m: ratio(nlls, col(k), math.exp, unit) for m, k in
                  (("ppl", "original_tokens"), ("word_ppl", "words"), ("token_ppl", "gpt2_tokens"))}
        spread["bits_per_byte"] = ratio([x / math.log(2) for x in nlls], col("bytes"), unit=unit)
        return Scored(metrics, samples, extra=extra, spread=spread, pairs=[("ppl", "token_ppl"), ("ppl", "word_ppl")])

    def sample(self, i: int, rows) -> dict:
        """One sample row: a line (one stream per file) or an article (per_article)."""
        if not self.per_article:
            rows = [rows]
        text = "".join(d for _, d, _, _ in rows)
        original = "".join(o for o, _, _, _ in rows)
        row = {"article" if self.per_article else "line": i, "text": text[:80],
               "sha256": hashlib.sha256(text.encode()).hexdigest()[:16],
               "original_tokens": count_original_tokens(original), "words": count_words(original),
               "gpt2_tokens": sum(t for *_, t in rows), "bytes": len(text.encode("utf-8")),
               "nll": sum(n for _, _, n, _ in rows)}
        if self.per_article:
            row["lines"] = len(rows)
        return row
