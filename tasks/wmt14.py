"""WMT-14 English-French translation, newstest2014, both directions (the paper's Section 3.7).

Data: the official SGML test files `wmt14/newstest2014-fren-{src,ref}.{en,fr}.sgm` (3,003
segments; src.fr + ref.en is French->English, src.en + ref.fr English->French; sacrebleu's
`wmt14` fr-en), else the hub's wmt/wmt14 `fr-en` test split. SGML: one `<seg id=N>` per line
inside `<doc>`; XML's five entities and numeric character references are unescaped (a bare `&`,
as in "S&P", is text); whitespace is collapsed as sacrebleu does. On these files the segments are
exactly sacrebleu's. Anything else is one error naming the file and the line.
Prompt (the paper: "a context of example pairs of the format english sentence = french sentence
and then after a final prompt of english sentence ="; French->English the other way round):
    {source} = {target}\\n  (x pairs)  then  {source} =
Example pairs (their number and source are not in the paper; option `pairs`, 5 by default; a test
segment is never its own example): the first `pairs` pairs of newstest2013 (the hub's wmt/wmt14
fr-en `validation`) when read from the hub; offline the first `pairs` newstest2014 segments, which
are then left out of scoring (n_full = 3,003 - pairs: 2,998 by default).
Decoding: greedy, at most 16 + len(source) x R new tokens, R = 1/3 (fr->en) or 2/3 (en->fr), source
length in characters: every newstest2014 reference and its newline fits, with at least 13% to
spare (measured with the GPT-2 tokenizer); a random model, which never stops, stays cheap.
"The first generated sentence is the translation": `bleu` takes the first generated line (the
pairs are one per line), stripped; `bleu_first_sentence` cuts that line again at its first
sentence end (pysbd, the target language), the literal reading, which drops the rest of a
multi-sentence segment. Both are compared with the paper's BLEU.
Metrics: sacrebleu corpus BLEU, its defaults (13a tokenization); `bleu_multibleu`, BLEU as
multi-bleu.perl computes it on Moses-tokenized text (XLM's preprocessing by sacremoses, sacrebleu
with tokenize="none" and no smoothing: gpt2eval.metrics.bleu), the setting of the unsupervised-MT
baselines; each compared with the paper's BLEU, their signatures in `extra`. Intervals: BLEU
recomputed from sacrebleu's per-segment statistics on resampled segments. predictions/<key>.txt
and references/<key>.txt (one segment per line, <key> the task's file stem) are what
`run_eval.py score --task <task>` takes. The example pairs are every prompt's shared `prefix`.
"""
import html
import re
from functools import lru_cache

from gpt2eval.api.data import Dataset, read_text, sha256_text
from gpt2eval.errors import DataError
from gpt2eval.errors import UserError
from gpt2eval.metrics.bleu import bleu_spread, corpus_bleu, multibleu, multibleu_spread
from gpt2eval.api.requests import Generation
from gpt2eval.api.task import Metric, Option, Scored, Task

HUB = ("wmt/wmt14", "fr-en")
SEG = re.compile(r'<seg id="?(\d+)"?>(.*)</seg>\s*$')
ENTITY = re.compile(r"&(amp|lt|gt|quot|apos|#\d+|#x[0-9a-fA-F]+);")
OTHER_TAGS = re.compile(r"\s*(</?(srcset|refset|tstset|p|hl)\b[^>]*>)?\s*$")
SGML_FORMAT = "WMT SGML: <doc ...> lines holding one <seg id=\"N\">text</seg> per line, then </doc>"


def read_sgml(path) -> list[tuple[str, str]]:
    """((docid/segid), text) of every segment of a WMT SGML file, in file order."""
    segments, doc = [], None
    for n, line in enumerate(read_text(path).split("\n"), 1):
        stripped = line.strip()
        if stripped.startswith("<doc "):
            docid = re.search(r'docid="([^"]*)"', stripped)
            doc = docid.group(1) if docid else f"doc{n}"
        elif stripped == "</doc>":
            doc = None
        elif stripped.startswith("<seg"):
            m = SEG.match(stripped)
            if not m or doc is None:
                raise DataError(f"{path}, line {n}: " + ("a <seg> outside any <doc>" if m else
                                "not a complete <seg id=\"N\">...</seg> line") + f"; expected {SGML_FORMAT}")
            text = ENTITY.sub(lambda e: html.unescape(e.group(0)), m.group(2))
            segments.append((f"{doc}/{m.group(1)}", re.sub(r"\s+", " ", text.strip())))
        elif not OTHER_TAGS.match(line):
            raise DataError(f"{path}, line {n}: unexpected text {stripped[:60]!r}; expected {SGML_FORMAT}")
    if not segments:
        raise DataError(f"{path}: no <seg> elements; expected {SGML_FORMAT}")
    return segments


@lru_cache(maxsize=2)
def _segmenter(lang: str):
    import pysbd
    return pysbd.Segmenter(language=lang, clean=False)


def first_sentence(text: str, lang: str) -> str:
    sentences = _segmenter(lang).segment(text) if text.strip() else []
    return sentences[0].strip() if sentences else ""


class WMT14(Task):
    src, tgt = "", ""
    new_tokens_per_char = 1.0  # the generation budget per character of the source sentence
    options = {"pairs": Option(5, "example pairs in the context before the sentence to translate")}

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.pairs < 0:
            raise UserError(f"task {self.name}: option pairs={self.pairs} must be 0 or more")

    @property
    def protocol(self):
        return {"examples": f"{self.pairs} pairs: newstest2013 1-{self.pairs} (hub), else newstest2014 segments "
                            f"1-{self.pairs}, then left out of scoring (local files)", **PROTOCOL}

    def load(self, data):
        relpaths = f"wmt14/newstest2014-fren-src.{self.src}.sgm", f"wmt14/newstest2014-fren-ref.{self.tgt}.sgm"
        paths = [data.find(p) for p in relpaths]
        if all(paths):
            src, ref = read_sgml(paths[0]), read_sgml(paths[1])
            if [i for i, _ in src] != [i for i, _ in ref]:
                raise DataError(f"{paths[0]} and {paths[1]}: the segments do not align (different docid/seg ids)")
            pairs = [(i, s, r) for (i, s), (_, r) in zip(src, ref)]
            shots, scored = pairs[:self.pairs], pairs[self.pairs:]
            source = {**data.file_source(paths[0], relpaths[0]), "reference": data.file_source(paths[1], relpaths[1]),
                      "examples_from": f"newstest2014 segments 1-{self.pairs} (not scored)"}
        else:
            rows = data.hub(*HUB, "test")
            scored = [(f"test/{i + 1}", r["translation"][self.src], r["translation"][self.tgt]) for i, r in enumerate(rows)]
            shots = [(None, r["translation"][self.src], r["translation"][self.tgt])
                     for r in list(data.hub(*HUB, "validation"))[:self.pairs]]
            source = {**data.hub_source(*HUB, "test", rows),
                      "examples_from": f"newstest2013 (validation) 1-{self.pairs}"}
        source["examples"] = [[s, t] for _, s, t in shots]
        text = "".join(f"{s} = {t}\n" for _, s, t in shots)
        return Dataset([{"id": i, "source": s, "reference": r, "shots": text} for i, s, r in scored],
                       n_full=len(scored), source=source)

    def requests(self, examples):
        return {"translation": [Generation(f"{ex['shots']}{ex['source']} =", self.budget(ex["source"]), stop=("\n",),
                                           prefix=ex["shots"], truncate="left", seed_key=f"{self.name}/{ex['id']}")
                                for ex in examples]}

    def budget(self, source: str) -> int:
        return 16 + int(len(source) * self.new_tokens_per_char)

    def score(self, examples, answers):
        results = answers["translation"]
        hyps = [r.text.strip() for r in results]
        firsts = [first_sentence(h, self.tgt) for h in hyps]
        refs = [ex["reference"] for ex in examples]
        samples = [{"id": ex["id"], "source": ex["source"], "reference": ex["reference"], "generated": r.raw_text,
                    "hypothesis": h, "hypothesis_first_sentence": f, "stopped_by": r.stopped_by,
                    "prompt_sha256": sha256_text(f"{ex['shots']}{ex['source']} ="), "prompt_tokens": r.prompt_tokens,
                    "truncated_tokens": r.truncated_tokens} for ex, r, h, f in zip(examples, results, hyps, firsts)]
        bleu, signature = corpus_bleu(hyps, refs)
        bleu_first, _ = corpus_bleu(firsts, refs)
        moses, moses_signature = multibleu(hyps, refs, self.tgt)
        extra = {"bleu_signature": signature, "bleu_multibleu_signature": moses_signature,
                 "n_truncated": sum(r.truncated_tokens > 0 for r in results),
                 "n_hit_length_limit": sum(r.stopped_by == "length" for r in results)}
        files = {f"predictions/{self.file_stem}.txt": "".join(h + "\n" for h in hyps),
                 f"references/{self.file_stem}.txt": "".join(r + "\n" for r in refs)}
        spread = {"bleu": bleu_spread(hyps, refs), "bleu_first_sentence": bleu_spread(firsts, refs),
                  "bleu_multibleu": multibleu_spread(hyps, refs, self.tgt)}
        return Scored({"bleu": bleu, "bleu_first_sentence": bleu_first, "bleu_multibleu": moses}, samples, extra,
                      files, spread=spread)


def _metrics(task: str) -> dict:
    return {"bleu": Metric(f"{task}/bleu", "sacrebleu 13a, first generated line"),
            "bleu_first_sentence": Metric(f"{task}/bleu", "sacrebleu 13a, first sentence of the first line (pysbd)"),
            "bleu_multibleu": Metric(f"{task}/bleu", "multi-bleu.perl on Moses-tokenized text (sacremoses, XLM's "
                                                     "preprocessing; sacrebleu tokenize=none, no smoothing), first "
                                                     "generated line")}


PROTOCOL = {  # after "examples", which depends on the pairs option
    "prompt": "'{source} = {target}\\n' per example pair, then '{source} ='",
    "decoding": "greedy, <= 16 + len(source chars) x R new tokens (R = 1/3 fr->en, 2/3 en->fr), stop at the first "
                "newline; bleu: that line, stripped; bleu_first_sentence: its first pysbd sentence",
    "metric": "sacrebleu corpus BLEU, defaults (13a tokenization, mixed case, exp smoothing); bleu_multibleu: "
              "multi-bleu.perl's BLEU on Moses-tokenized text (sacremoses as XLM preprocesses, sacrebleu "
              "tokenize=none, smooth=none); signatures in extra",
}


class WMT14FrEn(WMT14):
    name, src, tgt, new_tokens_per_char = "wmt14_fr_en", "fr", "en", 1 / 3
    description = "WMT-14 newstest2014 French->English: 'fr = en' pairs + 'fr =', greedy, sacrebleu BLEU"
    metrics = _metrics("wmt14_fr_en")


class WMT14EnFr(WMT14):
    name, src, tgt, new_tokens_per_char = "wmt14_en_fr", "en", "fr", 2 / 3
    description = "WMT-14 newstest2014 English->French: 'en = fr' pairs + 'en =', greedy, sacrebleu BLEU"
    metrics = _metrics("wmt14_en_fr")
