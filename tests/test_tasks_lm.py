"""LAMBADA and the perplexity tasks: data, metric definitions on hand-made answers, hub conversion."""
import math

import pytest

from conftest import DATA
from gpt2eval.api.data import KNOWN_SHA256, DataSource, sha256_text, text_from_hub_lines
from gpt2eval.api.requests import GenerationResult, LoglikelihoodResult, RollingLoglikelihood, RollingResult
from gpt2eval.api.plugins import select


def task(name):
    return select([name])[0]


def test_lambada_data_and_split():
    ds = task("lambada").load(DataSource(DATA))
    assert len(ds.examples) == ds.n_full == 5153
    assert ds.source["verified"] and ds.source["sha256"] == KNOWN_SHA256["lambada/lambada_test.jsonl"]
    ctx, target = ds.examples[0]
    assert target.startswith(" ") and " " not in target[1:]
    first = (DATA / "lambada/lambada_test.jsonl").read_text().splitlines()[0]
    assert '"text": ' in first and first.endswith(target[1:] + '"}')


def test_lambada_metrics_by_hand():
    t = task("lambada")
    examples = [("a b", " cat"), ("c d", " dog"), ("e f", " emu")]
    ll = [LoglikelihoodResult(-1.0, True, [-1.0], [True]),                  # right, one token
          LoglikelihoodResult(-3.0, False, [-2.0, -1.0], [False, True]),    # only the last token right
          LoglikelihoodResult(-2.0, False, [-0.5, -1.5], [True, False])]    # only the first token right
    gen = [GenerationResult(" cat.", " cat.", 2), GenerationResult(" Dog", " Dog", 1),
           GenerationResult(" emu and", " emu and", 2)]
    bflm = [GenerationResult(" Cat!", " Cat!", 2), GenerationResult(" dogs", " dogs", 1),  # bflm: lower-cased, "cat"
            GenerationResult(' "emu"', ' "emu"', 3)]                                        # the first word is '"'
    m = t.score(examples, {"target": ll, "stopword_filter": gen, "stopword_filter_bflm": bflm}).metrics
    assert m["ppl"] == pytest.approx(math.exp((1 + 3 + 2) / 3))  # exp(mean NLL of the target word)
    assert m["acc"] == pytest.approx(100 / 3)                     # all tokens greedy: example 1 only
    assert m["acc_last_token"] == pytest.approx(200 / 3)          # last token greedy: examples 1, 2
    assert m["acc_stopword_filter"] == pytest.approx(200 / 3)     # "cat" (punct stripped), "emu"; "Dog" != "dog"
    assert m["acc_stopword_filter_bflm"] == pytest.approx(100 / 3)  # "cat" only: "dogs" != "dog", '"' != "emu"


def test_lambada_requests_filter_stop_words():
    t = task("lambada")
    reqs = t.requests([("He said", " hello")])
    (target,), (filtered,) = reqs["target"], reqs["stopword_filter"]
    assert target.context == "He said" and target.continuation == " hello"
    words = set(filtered.decoding.suppress_words)
    assert {"the", "and", "he", "she"} <= words and "hello" not in words and filtered.decoding.greedy


@pytest.mark.parametrize("name,n_lines,n_orig", [("ptb", 3761, 82430), ("wikitext103", 4358, 245569),
                                                 ("wikitext2", 4358, 245569)])
def test_perplexity_tasks_load_whole_files(name, n_lines, n_orig):
    from gpt2eval.protocols.detokenize import count_original_tokens
    t = task(name)
    ds = t.load(DataSource(DATA))
    assert len(ds.examples) == ds.n_full == n_lines
    assert ds.source["verified"]
    assert sum(count_original_tokens(o) for o, _ in ds.examples) == n_orig
    named = t.requests(ds.examples)
    assert list(named) == ["stream"] and isinstance(named["stream"], RollingLoglikelihood)  # the file is one stream


def test_perplexity_normalised_per_original_token():
    t = task("ptb")
    examples = [(" a b c \n", "a b c\n"), (" d e \n", "d e\n")]  # 4 + 3 = 7 original tokens
    text = "a b c\nd e\n"
    starts = [0, 1, 3, 5, 6, 7, 9]  # "a"," b"," c","\n" on line 0 (chars 0-5); "d"," e","\n" on line 1
    lps = [-1.0, -2.0, -1.0, -0.5, -0.5, -3.0, -1.0]
    scored = t.score(examples, {"stream": RollingResult(lps, starts)})
    total = 9.0
    assert scored.metrics["ppl"] == pytest.approx(math.exp(total / 7))
    assert scored.metrics["token_ppl"] == pytest.approx(math.exp(total / 7))
    assert scored.metrics["bits_per_byte"] == pytest.approx(total / math.log(2) / len(text))
    assert [s["nll"] for s in scored.samples] == pytest.approx([1 + 2 + 1 + 0.5, 0.5 + 3 + 1])  # by the line each token starts on
    assert [s["original_tokens"] for s in scored.samples] == [4, 3]
    assert scored.extra["original_tokens"] == 7 and scored.extra["gpt2_tokens"] == 7


def hub_rows_from_upstream(path):
    """Rows shaped like Salesforce/wikitext: each line keeps its newline; blank ' \\n' lines are ''."""
    return [{"text": "" if line == " \n" else line} for line in path.read_text().splitlines(keepends=True)]


def test_wikitext_hub_rows_rebuild_the_upstream_bytes(monkeypatch):
    rel = "wikitext/wikitext-103/wiki.test.tokens"
    rows = hub_rows_from_upstream(DATA / rel)
    assert sha256_text(text_from_hub_lines(rows)) == KNOWN_SHA256[rel]
    source = DataSource(None)
    monkeypatch.setattr(source, "hub", lambda *a, **k: rows)
    ds = task("wikitext103").load(source)
    assert ds.source["kind"] == "hub" and ds.source["verified"] and len(ds.examples) == 4358


def test_ptb_text_loader_rows_rebuild_the_upstream_bytes(monkeypatch):
    rows = [{"text": line} for line in (DATA / "ptb/ptb.test.txt").read_text().split("\n")[:-1]]
    source = DataSource(None)
    monkeypatch.setattr(source, "hub", lambda *a, **k: rows)
    ds = task("ptb").load(source)
    assert ds.source["verified"] and ds.source["url"].endswith("ptb.test.txt") and len(ds.examples) == 3761


def test_lambada_hub_rows(monkeypatch):
    import json
    rows = [json.loads(line) for line in (DATA / "lambada/lambada_test.jsonl").read_text().splitlines()[:5]]
    source = DataSource(None)
    monkeypatch.setattr(source, "hub", lambda *a, **k: rows)
    ds = task("lambada").load(source)
    assert ds.source == {"kind": "hub", "dataset": "EleutherAI/lambada_openai", "config": "default",
                         "split": "test", "fingerprint": None}
    assert [c + t for c, t in ds.examples] == [r["text"] for r in rows]
