"""The generation tasks' options and metrics on the real shared data: CNN/DM `truncate` on the FRANK
articles, WMT-14 `pairs` on the SGML files, `bleu_multibleu` (multi-bleu.perl's BLEU on Moses-tokenized
text), CoQA's `f1_domain_mean` on the shared story; and old task names answered with their new
spelling."""
import json
import math
import sys

import pytest
from sacrebleu.metrics import BLEU
from sacremoses import MosesPunctNormalizer, MosesTokenizer

from conftest import DATA
from gpt2eval.api.data import DataSource
from gpt2eval.api.plugins import RENAMED, select
from gpt2eval.api.requests import GenerationResult
from gpt2eval.cli.main import main
from gpt2eval.engine.encode import Encoder
from gpt2eval.errors import UserError
from gpt2eval.metrics import coqa
from gpt2eval.metrics.bleu import corpus_bleu, multibleu, multibleu_spread

HINT_AND_NEW = 100  # new tokens; the hint's few tokens come on top


def load(spec):
    t = select([spec])[0]
    return t, t.load(DataSource(DATA))


def result(text: str, prompt_tokens: int = 0, cut: int = 0) -> GenerationResult:
    return GenerationResult(text, text, 4, "stop", prompt_tokens, cut)


# ---- CNN/Daily Mail: truncate ---------------------------------------------------------------------

def test_cnn_truncate_cuts_the_end_or_the_start_of_long_articles(tokenizer):
    end, ds = load("cnn_dailymail")
    start = select(["cnn_dailymail:truncate=start"])[0]
    assert (end.key, start.key) == ("cnn_dailymail", "cnn_dailymail:truncate=start")
    encoder = Encoder(tokenizer, 1024)
    cut_end, cut_start = [], []
    for ex in ds.examples:
        (a, _), (b, _) = (list(t.requests([ex])["summary"][0].values()) for t in (end, start))
        assert (a[0].truncate, b[0].truncate) == ("prefix_end", "left") and a[0].context == b[0].context
        full = encoder.encode(a[0].context)
        kept_end, kept_start = encoder.prompt(a[0], {}), encoder.prompt(b[0], {})
        if len(full) <= 1024 - HINT_AND_NEW:
            assert kept_end.ids == kept_start.ids == full
            continue
        article = encoder.encode(ex["article"])
        assert kept_end.ids[:50] == article[:50] and kept_end.ids[-5:] == full[-5:]   # its start and the hint
        assert kept_start.ids == full[-(1024 - HINT_AND_NEW):]                        # its end and the hint
        cut_end.append(kept_end.dropped)
        cut_start.append(kept_start.dropped)
    assert len(cut_end) == 55 and len(ds.examples) == 250   # 22% of the 250 articles are too long
    assert all(x > 0 for x in cut_end) and cut_start == [n for n in cut_start if n > 0]
    assert "cut at its start, its end kept" in start.protocol["truncation"]
    assert "cut at its end, its start kept" in end.protocol["truncation"]


def test_cnn_extra_counts_the_articles_cut():
    t, ds = load("cnn_dailymail:truncate=start")
    examples = ds.examples[:3]
    cuts = [0, 250, 7]
    summary = [{"tldr": [result(" A summary. Of it.", 924, n)], "no_hint": [result(" Other.", 924, max(0, n - 3))]}
               for n in cuts]
    scored = t.score(examples, {"summary": summary})
    assert scored.extra["n_truncated"] == 2 and scored.extra["truncated_tokens"] == 257
    assert [s["truncated_tokens"]["tldr"] for s in scored.samples] == cuts


# ---- WMT-14: pairs and bleu_multibleu -------------------------------------------------------------

@pytest.mark.parametrize("pairs", [0, 2, 5])
def test_wmt_pairs_sets_the_example_pairs_and_what_is_scored(pairs):
    t, ds = load(f"wmt14_fr_en:pairs={pairs}")
    every = load("wmt14_fr_en:pairs=0")[1].examples
    assert t.key == ("wmt14_fr_en" if pairs == 5 else f"wmt14_fr_en:pairs={pairs}")
    assert ds.n_full == len(ds.examples) == 3003 - pairs and len(every) == 3003
    assert [ex["id"] for ex in ds.examples] == [ex["id"] for ex in every[pairs:]]   # the pairs are not scored
    assert ds.source["examples"] == [[ex["source"], ex["reference"]] for ex in every[:pairs]]
    (req,) = t.requests(ds.examples[:1])["translation"]
    shots = req.prefix.split("\n")[:-1]
    assert len(shots) == pairs and all(" = " in line for line in shots)
    assert req.context == req.prefix + ds.examples[0]["source"] + " ="
    assert t.protocol["examples"].startswith(f"{pairs} pairs")
    if pairs == 2:
        assert shots[0] == ("Spectaculaire saut en \"wingsuit\" au-dessus de Bogota = "
                            "Spectacular Wingsuit Jump Over Bogota")


def test_wmt_pairs_must_not_be_negative():
    with pytest.raises(UserError, match="^task wmt14_en_fr: option pairs=-1 must be 0 or more$"):
        select(["wmt14_en_fr:pairs=-1"])


def moses_by_hand(texts, lang):
    """XLM's preprocessing written out with sacremoses: punctuation normalised, tokenized unescaped."""
    norm, tok = MosesPunctNormalizer(lang, pre_replace_unicode_punct=True, post_remove_control_chars=True), \
        MosesTokenizer(lang)
    return [tok.tokenize(norm.normalize(t), escape=False, return_str=True) for t in texts]


@pytest.mark.parametrize("task,lang", [("wmt14_fr_en", "en"), ("wmt14_en_fr", "fr")])
def test_bleu_multibleu_is_sacrebleu_without_tokenizing_on_moses_tokens(task, lang):
    _, ds = load(task)
    refs = [ex["reference"] for ex in ds.examples[:300]]
    hyps = [" ".join(r.split()[: max(1, len(r.split()) * 2 // 3)]) if i % 3 else r.replace(",", "")
            for i, r in enumerate(refs)]   # cut, or without commas: partial matches
    score, signature = multibleu(hyps, refs, lang)
    expected = BLEU(tokenize="none", smooth_method="none").corpus_score(moses_by_hand(hyps, lang),
                                                                        [moses_by_hand(refs, lang)])
    assert score == pytest.approx(expected.score, abs=1e-9) and 0 < score < 100
    assert score != pytest.approx(corpus_bleu(hyps, refs)[0], abs=0.01)   # another tokenization than 13a
    assert "tok:none" in signature and "smooth:none" in signature and "sacremoses" in signature
    assert multibleu_spread(hyps, refs, lang).value() == pytest.approx(score)


def test_bleu_multibleu_by_hand_and_without_smoothing():
    # 1- to 4-gram precisions 6/7, 4/6, 2/5, 1/4, same length: BLEU = their geometric mean
    score, _ = multibleu(["the cat sat on the mat ."], ["the cat sat on a mat ."], "en")
    assert score == pytest.approx(100 * (6 / 7 * 4 / 6 * 2 / 5 * 1 / 4) ** 0.25)
    # no matching 4-gram: multi-bleu.perl says 0 (sacrebleu's default smoothing would not)
    assert multibleu(["a b c d e"], ["a b c x e"], "en")[0] == 0.0 < corpus_bleu(["a b c d e"], ["a b c x e"])[0]
    # French: Moses splits the elided article off ("l' homme"), 13a does not
    hyp, ref = ["Il a dit que l'homme est là."], ["Il a dit que l'homme est ici."]
    assert moses_by_hand(hyp, "fr") == ["Il a dit que l' homme est là ."]
    assert multibleu(hyp, ref, "fr")[0] != pytest.approx(corpus_bleu(hyp, ref)[0], abs=0.01)


def test_wmt_task_reports_bleu_multibleu_in_its_target_language():
    for task, lang in (("wmt14_fr_en", "en"), ("wmt14_en_fr", "fr")):
        t, ds = load(f"{task}:pairs=3")
        examples = ds.examples[:20]
        hyps = [ex["reference"] for ex in examples[:10]] + [ex["source"] for ex in examples[10:]]
        scored = t.score(examples, {"translation": [result(" " + h) for h in hyps]})
        refs = [ex["reference"] for ex in examples]
        assert scored.metrics["bleu_multibleu"] == pytest.approx(multibleu(hyps, refs, lang)[0])
        assert scored.extra["bleu_multibleu_signature"].endswith(f"-{lang}-normalized-no-escape")
        assert t.metrics["bleu_multibleu"].reference == f"{task}/bleu"
        assert f"predictions/{task}@pairs=3.txt" in scored.files and f"references/{task}@pairs=3.txt" in scored.files


# ---- CoQA: f1_domain_mean -------------------------------------------------------------------------

def test_f1_domain_mean_on_the_shared_story():
    t, ds = load("coqa")
    answers = [ex["golds"][0] if i % 2 else "no idea" for i, ex in enumerate(ds.examples)]
    scored = t.score(ds.examples, {"answer": [result(" " + a) for a in answers]})
    m = scored.metrics
    assert len(ds.examples) == 12 and {ex["source"] for ex in ds.examples} == {"mctest"}
    assert m["f1_domain_mean"] == pytest.approx(m["f1"]) == pytest.approx(m["f1_children_stories"])  # one domain
    assert 0 < m["f1"] < 100 and t.metrics["f1_domain_mean"].reference == "coqa/f1"


def test_f1_domain_mean_weighs_every_domain_alike():
    """The shared story twice, once as a 2-turn news story: the turn-weighted F1 and the mean over
    domains part."""
    data = json.loads((DATA / "coqa/coqa-dev-v1.0_first_story.json").read_text())
    story = data["data"][0]
    news = {**story, "id": "news-copy", "source": "cnn", "questions": story["questions"][:2],
            "answers": story["answers"][:2],
            "additional_answers": {k: v[:2] for k, v in story["additional_answers"].items()}}
    data["data"].append(news)
    t = select(["coqa"])[0]
    examples = sys.modules[type(t).__module__].turns(data)   # as the task's load reads an official file
    answers = ["wrong"] * 12 + [ex["golds"][0] for ex in examples[12:]]   # mctest all wrong, news right
    scored = t.score(examples, {"answer": [result(" " + a) for a in answers]})
    m = scored.metrics
    assert m["f1_children_stories"] == 0 and m["f1_news"] > 0
    assert m["f1_domain_mean"] == pytest.approx((m["f1_children_stories"] + m["f1_news"]) / 2)
    assert m["f1"] == pytest.approx(m["f1_news"] * 2 / 14)                  # turn-weighted
    report = coqa.score_predictions(coqa.load_gold(data), {(ex["id"], ex["turn_id"]): a
                                                           for ex, a in zip(examples, answers)}, ndigits=None)
    assert coqa.domain_mean(report) == pytest.approx(m["f1_domain_mean"])
    assert scored.spread["f1_domain_mean"].value() == pytest.approx(m["f1_domain_mean"])
    assert not math.isnan(scored.spread["f1_domain_mean"].value())


# ---- old names ------------------------------------------------------------------------------------

@pytest.mark.parametrize("old,new", sorted(RENAMED.items()))
def test_an_old_variant_name_is_one_line_naming_its_new_spelling(old, new, tmp_path, capsys):
    with pytest.raises(UserError, match=f"^task {old} is now {new} "):
        select([old])
    select([new])  # the new spelling is a real task with real options
    assert main(["--model", str(tmp_path / "no-model"), "--tasks", f"ptb,{old}", "--output", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: task {old} is now {new}") and "\n" not in err
