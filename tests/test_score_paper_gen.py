"""`run_eval.py score` for Natural Questions, WMT-14 and CNN/Daily Mail, checked against the
standard libraries called directly (sacrebleu, rouge-score) and against answers worked out by hand."""
import json
import sys

import pytest
import sacrebleu
from rouge_score import rouge_scorer

from conftest import DATA
from gpt2eval.cli.main import main
from gpt2eval.api.data import read_jsonl
from gpt2eval.metrics.summarization import detokenize_ptb, first_sentences
from gpt2eval.api.plugins import select

NQ = DATA / "nq_open" / "NQ-open.dev.jsonl"


def score(*args):
    return main(["score", *map(str, args)])


def references(name="newstest2014-fren-ref.en.sgm", n=60):
    read_sgml = sys.modules[type(select(["wmt14_fr_en"])[0]).__module__].read_sgml
    return [text for _, text in read_sgml(DATA / "wmt14" / name)][:n]


def perturb(lines):
    """Hypotheses that share some but not all n-grams with the references (one left empty)."""
    out = []
    for i, line in enumerate(lines):
        words = line.split()
        out.append("" if i == 7 else " ".join(words[::-1]) if i % 3 == 0 else " ".join(words[:-2] + ["the"]))
    return out


@pytest.mark.parametrize("task, sgm", [("wmt14_fr_en", "newstest2014-fren-ref.en.sgm"),
                                       ("wmt14_en_fr", "newstest2014-fren-ref.fr.sgm")])
def test_wmt_score_is_sacrebleus_corpus_bleu(tmp_path, capsys, task, sgm):
    refs = references(sgm)
    hyps = perturb(refs)
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    (tmp_path / "hyp.txt").write_text("\n".join(hyps))  # no final newline: still one segment per line
    assert score("--task", task, "--gold", tmp_path / "ref.txt", "--predictions", tmp_path / "hyp.txt",
                 "--output", tmp_path / "out") == 0
    bleu = sacrebleu.BLEU()
    expected = bleu.corpus_score(hyps, [refs])
    assert expected.score == sacrebleu.corpus_bleu(hyps, [refs]).score
    result = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"][task]
    assert result["metrics"]["bleu"] == expected.score and 10 < expected.score < 90
    assert result["extra"]["n_segments"] == 60
    assert result["extra"]["bleu_signature"] == str(bleu.get_signature())
    assert f"{task} bleu: {expected.score:.4f}" in capsys.readouterr().out
    from gpt2eval.metrics.bleu import multibleu  # the task's own multi-bleu, in the target language
    moses, signature = multibleu(hyps, refs, task[-2:])
    assert result["metrics"]["bleu_multibleu"] == moses != expected.score
    assert result["extra"]["bleu_multibleu_signature"] == signature and "intervals" in result
    assert result["intervals"]["bleu_multibleu"]["ci_low"] <= moses <= result["intervals"]["bleu_multibleu"]["ci_high"]


def test_wmt_line_count_mismatch_is_one_clear_error(tmp_path, capsys):
    refs = references(n=5)
    (tmp_path / "ref.txt").write_text("\n".join(refs) + "\n")
    (tmp_path / "hyp.txt").write_text("\n".join(refs[:4]) + "\n")
    assert score("--task", "wmt14_fr_en", "--gold", tmp_path / "ref.txt", "--predictions", tmp_path / "hyp.txt") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and "has 4 lines but" in err and "has 5" in err


def test_natural_questions_score_by_hand(tmp_path, capsys):
    gold = NQ.read_text().splitlines(True)[:4]  # moon landing, "he ain't heavy", bastard executioner, eagles
    (tmp_path / "gold.jsonl").write_text("".join(gold))
    preds = {"when was the last time anyone was on the moon": "December, 1972.",  # EM after normalisation
             "who wrote he ain't heavy he's my brother lyrics": "the Bob Russell",  # EM: the article goes
             "how many seasons of the bastard executioner are there": "one season only"}  # F1 only; 4th missing
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert score("--task", "natural_questions", "--gold", tmp_path / "gold.jsonl", "--predictions",
                 tmp_path / "p.json", "--output", tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["natural_questions"]["metrics"]
    assert metrics["exact_match"] == pytest.approx(50.0)
    # F1: 1 + 1 + max(F1 vs "one" = 0.5, vs "one season" = 0.8) + 0, over 4 questions
    assert metrics["f1"] == pytest.approx(100 * (1 + 1 + 0.8) / 4)
    assert "1 of 4 gold questions have no prediction" in capsys.readouterr().out


@pytest.mark.parametrize("gold, predictions, message", [
    ('{"question": "q", "answer": ["a"]}\n{"question": "q2", "answer": []}\n', "{}", "line 2: 'answer'"),
    ('{"question": "q", "answer": ["a"]}\n', '["a"]', "JSON object from question text"),
])
def test_natural_questions_bad_files(tmp_path, capsys, gold, predictions, message):
    (tmp_path / "g.jsonl").write_text(gold)
    (tmp_path / "p.json").write_text(predictions)
    assert score("--task", "natural_questions", "--gold", tmp_path / "g.jsonl", "--predictions", tmp_path / "p.json") == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "\n" not in err and message in err


def test_cnn_dailymail_score_is_rouge_score_called_directly(tmp_path):
    rows = read_jsonl(DATA / "cnn_dailymail" / "frank_cnndm_test_250.jsonl")[:3]
    (tmp_path / "gold.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    preds = {r["id"]: first_sentences(r["article"].strip(), 3) for r in rows[:2]}  # lead-3; the third missing
    (tmp_path / "p.json").write_text(json.dumps(preds))
    assert score("--task", "cnn_dailymail", "--gold", tmp_path / "gold.jsonl", "--predictions", tmp_path / "p.json",
                 "--output", tmp_path / "out") == 0
    metrics = json.loads((tmp_path / "out" / "results.json").read_text())["tasks"]["cnn_dailymail"]["metrics"]
    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2"], use_stemmer=True)
    direct = [scorer.score(detokenize_ptb(r["reference_tokenized"]), preds.get(r["id"], "")) for r in rows]
    for name in ("rouge1", "rouge2"):
        assert metrics[name] == pytest.approx(100 * sum(d[name].fmeasure for d in direct) / 3, abs=1e-9)
    assert 10 < metrics["rouge1"] < 60 and set(metrics) == {"rouge1", "rouge2", "rougeL", "rouge_avg"}
