"""The paper's multiple-choice tasks (CBT-CN, CBT-NE, Winograd) and the helper they share."""
import json
import subprocess
import sys

import pytest
import torch

from conftest import DATA
from gpt2eval.protocols import multiple_choice as mc
from gpt2eval.api.answers import flatten, unflatten
from gpt2eval.api.data import DataSource
from gpt2eval.protocols.detokenize import cbt_detokenize
from gpt2eval.errors import DataError
from gpt2eval.api.requests import Loglikelihood, LoglikelihoodResult
from gpt2eval.api.plugins import select


def task(name):
    return select([name])[0]


def module(t):
    return sys.modules[type(t).__module__]


def ll(*token_logprobs):
    return LoglikelihoodResult(sum(token_logprobs), False, list(token_logprobs), [False] * len(token_logprobs))


# ---- the helper ---------------------------------------------------------------------------

def test_multiple_choice_requests_and_scoring_rules():
    qs = [mc.Question.shared_context("ctx", [" a", " b c"], gold=1),
          mc.Question.shared_continuation(["x", "y", "z"], " end", gold=0)]
    reqs = mc.requests(qs)  # one list of option requests per question
    assert reqs == [[Loglikelihood("ctx", " a"), Loglikelihood("ctx", " b c")],
                    [Loglikelihood("x", " end"), Loglikelihood("y", " end"), Loglikelihood("z", " end")]]
    assert reqs[0][0].context is reqs[0][1].context  # one shared string: the engine may forward it once
    results = [[ll(-3.0), ll(-2.0, -2.0)],            # sum: option 0 (-3 > -4); mean: option 1 (-2 > -3)
               [ll(-1.0), ll(-1.0), ll(-0.5, -0.5)]]  # sum: a tie of three at -1, the first wins
    by_sum, by_mean = mc.answers(qs, results, "sum"), mc.answers(qs, results, "mean")
    assert [a.choice for a in by_sum] == [0, 0] and [a.correct for a in by_sum] == [False, True]
    assert [a.choice for a in by_mean] == [1, 2] and by_mean[0].scores == [-3.0, -2.0]
    assert mc.accuracy(by_sum) == 50.0 and mc.accuracy(by_mean) == 50.0
    with pytest.raises(ValueError):
        mc.answers(qs, [results[0], results[1][:2]])  # an option's answer missing
    with pytest.raises(ValueError):
        mc.answers(qs, results[:1])                   # a question's answers missing
    with pytest.raises(ValueError):
        mc.Question.shared_context("c", [" a", " b"], gold=2)


# ---- CBT ----------------------------------------------------------------------------------

def test_cbt_detokenizer_on_the_raw_validation_books():
    raw = (DATA / "cbt/cbt_valid.txt").read_text(encoding="utf-8")
    out = cbt_detokenize(raw)
    raw_lines, out_lines = raw.split("\n"), out.split("\n")
    assert len(out_lines) == len(raw_lines)
    escapes = {"``": '"', "''": '"', "`": "'", "-LRB-": "(", "-RRB-": ")", "-LSB-": "[", "-RSB-": "]"}
    for r, o in zip(raw_lines, out_lines):   # only spaces change, apart from the escapes
        assert o.replace(" ", "") == "".join(escapes.get(t, t) for t in r.split()), r
    left = {tok for line in out_lines for tok in line.split()}
    assert not left & {",", ".", "'s", "n't", ";", "?", "!", "``", "''", "`", "-LRB-", "--"}  # none stands alone
    assert "`" not in out and "-LRB-" not in out
    i = raw_lines.index("` Oh , do not speak to me of marrying , ' sobbed the king ; ` rather let me die with you ! '")
    assert out_lines[i] == "'Oh, do not speak to me of marrying,' sobbed the king; 'rather let me die with you!'"
    assert "For some months the king's grief was great;" in out
    assert "is still two days' journey off:" in out    # a plural possessive, not a quote
    i = raw_lines.index("` Let some one go for her at once , ' ordered the king . '")
    assert out_lines[i].endswith("ordered the king. '")  # opens the next sentence's quote ...
    assert out_lines[i + 1].startswith("I commanded the presence of every maiden")
    assert out_lines[i + 1].endswith("and I meant it.'")  # ... which closes at that sentence's end


def test_cbt_loads_the_real_subset_questions():
    for name, gold, first, tail in [
            ("cbt_cn", "dog", "'What is it?' answered he. 'The ogre is coming after us.",
             "if I burrow underground,' cried he, and very soon he and the"),
            ("cbt_ne", "Chuck", None, "Suddenly Polly gave a little scream of fright. Johnny")]:
        ds = task(name).load(DataSource(DATA))
        assert len(ds.examples) == 1 and ds.n_full == 2000 and ds.source["verified"]
        q = ds.examples[0]
        context = q.options[0][0]
        assert all(ctx is context for ctx, _ in q.options) and len(q.options) == 10
        assert not context[0].isdigit() and " 2 " not in context  # sentence numbers stripped
        assert context.endswith(tail) and (first is None or context.startswith(first))
        if name == "cbt_cn":   # sentence 20 ends in the opening quote of sentence 21
            assert "could not pass through. 'I will get through it somehow," in context
        cont = q.options[q.gold][1]
        assert cont.startswith(" " + gold + " ") and "XXXXX" not in cont
    assert cont == " Chuck looked up to see a dog almost upon her."


def test_cbt_question_worked_out_by_hand(tiny_model, tokenizer, engine_factory):
    """The task's scores and choice against log_softmax over the model's own logits."""
    t = task("cbt_cn")
    examples = t.load(DataSource(DATA)).examples
    named = t.requests(examples)
    scored = t.score(examples, unflatten(named, engine_factory().run(flatten(t.name, named))))
    q, row = examples[0], scored.samples[0]
    assert row["candidates"][q.gold] == " dog were on the other side."
    by_hand = []
    for context, continuation in q.options:
        ctx, cont = tokenizer(context)["input_ids"], tokenizer(continuation)["input_ids"]
        assert len(ctx) + len(cont) <= 1024
        with torch.no_grad():
            logits = tiny_model(torch.tensor([ctx + cont[:-1]])).logits[0, len(ctx) - 1:]
        by_hand.append(torch.log_softmax(logits.double(), -1)[torch.arange(len(cont)), cont].sum().item())
    assert row["scores"] == pytest.approx(by_hand, abs=1e-3)
    assert row["choice"] == max(range(10), key=lambda k: by_hand[k])
    assert row["correct"] == (row["choice"] == q.gold)
    assert scored.metrics["acc"] == 100.0 * row["correct"]


def test_cbt_malformed_and_altered_files(tmp_path, monkeypatch):
    parse = module(task("cbt_cn")).parse_questions
    good = (DATA / "cbt/cbtest_CN_valid_2000ex.SUBSET_1ex.txt").read_text()
    assert len(parse(good, "f")) == 1
    lines = good.split("\n")
    with pytest.raises(DataError, match=r"f, line 3: expected sentence number 3, got '4'"):
        parse("\n".join(lines[:2] + ["4" + lines[2][1:]] + lines[3:]), "f")
    with pytest.raises(DataError, match="f: the file ends after sentence 20 of a question"):
        parse("\n".join(lines[:20]), "f")
    with pytest.raises(DataError, match="f, line 21: a query needs one XXXXX"):
        parse("\n".join(lines[:20] + [lines[20].replace("XXXXX", "dog")] + lines[21:]), "f")
    (tmp_path / "cbt").mkdir()
    (tmp_path / "cbt/cbtest_CN_valid_2000ex.txt").write_text(good)  # not the original 2,000-question file
    with pytest.raises(DataError, match="git blob id is .* but the original file's is dbe54c05"):
        task("cbt_cn").load(DataSource(tmp_path))
    t = task("cbt_cn")   # the full file's name is preferred; with its blob id pinned, it is read
    raw = good.encode()
    blob = subprocess.run(["git", "hash-object", "--stdin"], input=raw, capture_output=True).stdout.decode().strip()
    monkeypatch.setitem(module(t).GIT_BLOBS, "CN", blob)
    ds = t.load(DataSource(tmp_path))
    assert ds.source["git_blob"] == blob and ds.source["verified"] and len(ds.examples) == 1


# ---- Winograd -----------------------------------------------------------------------------

def test_winograd_data_and_both_scorings():
    t = task("winograd")
    ds = t.load(DataSource(DATA))
    assert len(ds.examples) == ds.n_full == 273 and ds.source["verified"]
    partial, full = ds.examples[2]
    beginning = "The trophy doesn't fit into the brown suitcase because"
    assert partial.options == ((beginning + " the trophy", " is too large."),
                               (beginning + " the suitcase", " is too large."))
    assert full.options[1] == ("", "The trophy doesn't fit into the brown suitcase because the suitcase is too large.")
    assert partial.gold == full.gold == 0
    reqs = t.requests(ds.examples[:2])
    assert list(reqs) == ["partial", "full"] and len(flatten(t.name, reqs)) == 8
    assert reqs["partial"][0][0].continuation == reqs["partial"][0][1].continuation == " feared violence."
    # partial: one right (question 0), one wrong; full: the other way round
    results = {"partial": [[ll(-1.0), ll(-2.0)], [ll(-1.0), ll(-2.0)]],
               "full": [[ll(-9.0), ll(-8.0)], [ll(-9.0), ll(-8.0)]]}
    scored = t.score(ds.examples[:2], results)
    assert scored.metrics == {"acc_partial": 50.0, "acc_full": 50.0}
    assert [s["correct_partial"] for s in scored.samples] == [True, False]
    assert [s["correct_full"] for s in scored.samples] == [False, True]


def test_winograd_xml_substitution_against_llm_foundry(tmp_path):
    w = module(task("winograd"))
    xml = w.from_xml(DATA / "winograd/WSCollection.xml")
    rows = [json.loads(line) for line in (DATA / "winograd/llmfoundry_winograd_wsc.jsonl").read_text().splitlines()]
    assert len(xml) == 273
    assert all(a["gold"] == b["gold"] for a, b in zip(xml, rows))
    assert all(a["continuation"] == " ".join(b["continuation"].split()) for a, b in zip(xml, rows))
    assert sum(a["context_options"] == b["context_options"] for a, b in zip(xml, rows)) == 143  # docstring's figure
    assert xml[0]["context_options"][0].endswith("because the city councilmen")   # "The" lower-cased
    assert w.substitute("Lily spoke to Donna, breaking", "her", "Lily") == "Lily spoke to Donna, breaking Lily's"
    (tmp_path / "winograd").mkdir()
    (tmp_path / "winograd/WSCollection.xml").write_bytes((DATA / "winograd/WSCollection.xml").read_bytes())
    ds = task("winograd").load(DataSource(tmp_path))   # no JSONL: the XML, substituted by rule
    assert ds.source["substitutions"] == "gpt2eval rules" and len(ds.examples) == 273


def test_winograd_malformed_jsonl(tmp_path, monkeypatch):
    from gpt2eval.api.data import KNOWN_SHA256
    (tmp_path / "winograd").mkdir()
    path = tmp_path / "winograd/llmfoundry_winograd_wsc.jsonl"
    good = (DATA / "winograd/llmfoundry_winograd_wsc.jsonl").read_text().splitlines()
    path.write_text("\n".join(good[:4] + [good[4].replace('"gold": 0', '"gold": 2')] + good[5:]) + "\n")
    with pytest.raises(DataError, match="SHA-256 is .* but the upstream file's is 746336c2"):
        task("winograd").load(DataSource(tmp_path))   # the file is pinned: any change is caught first
    monkeypatch.delitem(KNOWN_SHA256, "winograd/llmfoundry_winograd_wsc.jsonl")
    with pytest.raises(DataError, match=r"llmfoundry_winograd_wsc.jsonl, line 5: needs two context_options"):
        task("winograd").load(DataSource(tmp_path))


def test_hub_fallbacks_offline_say_what_to_do(tmp_path):
    with pytest.raises(DataError, match=r"cannot load cam-cst/cbt \(CN, validation\).*--data-dir"):
        task("cbt_cn").load(DataSource(tmp_path))
    hub = r"ErnestSDavis/winograd_wsc \(wsc273, test\).*loading script.*refs/convert/parquet"
    with pytest.raises(DataError, match=hub):
        task("winograd").load(DataSource(tmp_path))
