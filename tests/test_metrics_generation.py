"""Hand-computed checks for the CoQA, TriviaQA and summarization metrics.

Expected values are derived by hand in the comments, from the definitions in
the official CoQA / TriviaQA scripts and rouge-score, not by running our code.
"""

import json
import re
from pathlib import Path

import pytest

from gpt2eval.metrics import coqa, summarization, triviaqa

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
COQA_STORY = DATA / "coqa" / "coqa-dev-v1.0_first_story.json"
TRIVIAQA_SAMPLE = DATA / "triviaqa" / "triviaqa_sample.json"
FRANK = DATA / "cnn_dailymail" / "frank_cnndm_test_250.jsonl"


# ----------------------------------------------------------------- CoQA

def test_coqa_normalize_deletes_punctuation_before_removing_articles():
    # lower -> "the farmer's  dog, a/an pet!"; delete punctuation -> "the farmers  dog aan pet"
    # ("a/an" fuses into "aan", which is not an article); drop "the"; collapse spaces.
    assert coqa.normalize_answer("The Farmer's  dog, a/an pet!") == "farmers dog aan pet"
    assert coqa.normalize_answer("O'Neill") == "oneill"  # deleted, not replaced by a space


def test_coqa_exact_match_and_f1():
    assert coqa.exact_match("The cat.", "cat") == 1  # both normalize to "cat"
    assert coqa.exact_match("cats", "cat") == 0
    # gold [with her mommy and 5 sisters], pred [her mommy and 5 other sisters]:
    # 5 shared tokens, P = R = 5/6, so F1 = 5/6.
    assert coqa.f1("with her mommy and 5 sisters", "her mommy and 5 other sisters") == pytest.approx(5 / 6)
    assert coqa.f1("cat", "dog") == 0.0


def test_coqa_f1_empty_answers_follow_official_rule():
    # int(gold_toks == pred_toks) when either side has no tokens.
    assert coqa.f1("", "") == 1.0
    assert coqa.f1("the", "!!!", guard=False) == 1.0  # both normalize to nothing
    assert coqa.f1("the", "!!!") == 0.0  # guarded: a gold that normalisation erases is compared lower-cased
    assert coqa.f1("cat", "") == 0.0
    assert coqa.f1("", "cat") == 0.0


def test_coqa_single_gold_is_scored_directly():
    # pred [orange] vs gold [orange and white]: 1 shared, P = 1, R = 1/3,
    # F1 = 2 * (1/3) / (4/3) = 1/2; EM 0.
    assert coqa.score_turn(["orange and white"], "orange") == (0.0, pytest.approx(0.5))


def test_coqa_leave_one_out_with_four_golds():
    golds = ["white", "white cat", "black", "grey"]
    # Leave out gold 0: best of {white cat, black, grey} vs "white" -> EM 0,
    #   F1 vs "white cat" = 2 * 1 * (1/2) / (3/2) = 2/3.
    # Leave out gold 1, 2 or 3: "white" is still there -> EM 1, F1 1.
    # EM = (0 + 3) / 4 = 0.75; F1 = (2/3 + 3) / 4 = 11/12.
    em, f1 = coqa.score_turn(golds, "white")
    assert em == 0.75
    assert f1 == pytest.approx(11 / 12)


def test_coqa_unknown_is_an_ordinary_answer():
    # The official script has no special case for "unknown".
    assert coqa.score_turn(["unknown"] * 4, "Unknown.") == (1.0, 1.0)
    assert coqa.score_turn(["unknown"] * 4, "") == (0.0, 0.0)


def _story_gold():
    return coqa.load_gold(json.loads(COQA_STORY.read_text(encoding="utf-8")))


def test_coqa_load_gold_collects_main_and_additional_answers():
    gold = _story_gold()
    assert len(gold) == 12
    entry = gold[("3dr23u6we5exclen4th8uq9rb42tel", 2)]
    assert entry["source"] == "mctest"
    # answers, then additional_answers "0", "1", "2" in file order.
    assert entry["golds"] == ["in a barn", "in a barn", "in a barn", "in a barn near"]


def test_coqa_real_story_predicting_main_answer_is_not_100():
    # Predicting answers[i] per turn: leaving out gold 0 scores s0 = best match of
    # the 3 additional answers against answers[i]; leaving out any other gold
    # leaves answers[i] itself, scoring 1.  Turn score = (3 + s0) / 4.
    # s0 < 1 only on 4 turns:
    #  t4  "with her mommy and 5 sisters" vs "her mommy and 5 other sisters": EM 0, F1 5/6
    #  t5  "orange and white" vs "orange": P 1/3, R 1, F1 1/2 (same vs the 5-token answer) -> EM 0
    #  t8  "the farmer" -> [farmer] vs "the farmer's" -> [farmers]: EM 0, F1 0
    #  t10 "a bucket of water" (3 tokens) vs "a big bucket of water" (4): P 1, R 3/4, F1 6/7
    gold = _story_gold()
    preds = {key: entry["golds"][0] for key, entry in gold.items()}
    turn4 = ("3dr23u6we5exclen4th8uq9rb42tel", 4)
    assert coqa.score_turn(gold[turn4]["golds"], preds[turn4]) == (0.75, pytest.approx((3 + 5 / 6) / 4))
    # EM: 8 turns at 1 + 4 turns at 3/4 = 11 -> 11/12 = 91.67%.
    # F1: 8 + 23/24 + 7/8 + 3/4 + 27/28 = 8 + 596/168 -> /12 = 96.230%.
    exact = coqa.score_predictions(gold, preds, ndigits=None)["overall"]
    assert exact["em"] == pytest.approx(100 * 11 / 12)
    assert exact["f1"] == pytest.approx(100 * (8 + 596 / 168) / 12)
    report = coqa.score_predictions(gold, preds)
    assert report["overall"] == {"em": 91.7, "f1": 96.2, "turns": 12}
    assert report["children_stories"] == {"em": 91.7, "f1": 96.2, "turns": 12}
    assert report["in_domain"] == {"em": 91.7, "f1": 96.2, "turns": 12}
    assert report["out_domain"] == {"em": 0.0, "f1": 0.0, "turns": 0}
    assert report["literature"]["turns"] == 0


def test_coqa_missing_predictions_score_zero_but_count():
    gold = _story_gold()
    preds = {key: entry["golds"][0] for key, entry in gold.items()}
    del preds[("3dr23u6we5exclen4th8uq9rb42tel", 1)], preds[("3dr23u6we5exclen4th8uq9rb42tel", 2)]
    preds[("no-such-story", 1)] = "ignored"
    # Turns 1 and 2 each scored 1/1 before; now 0, still 12 turns.
    # EM = (11 - 2) / 12 = 75.0; F1 = (8 + 596/168 - 2) / 12 = 0.79563 -> 79.6
    assert coqa.score_predictions(gold, preds)["overall"] == {"em": 75.0, "f1": 79.6, "turns": 12}
    assert coqa.missing_predictions(gold, preds) == [
        ("3dr23u6we5exclen4th8uq9rb42tel", 1), ("3dr23u6we5exclen4th8uq9rb42tel", 2)]


def test_coqa_domain_breakdown():
    gold = {("s1", 1): {"golds": ["yes"], "source": "cnn"},
            ("s2", 1): {"golds": ["no"], "source": "reddit"},
            ("s2", 2): {"golds": ["blue sky"], "source": "reddit"}}
    preds = {("s1", 1): "yes", ("s2", 1): "yes", ("s2", 2): "sky"}
    report = coqa.score_predictions(gold, preds)
    # news: 1 turn, perfect.  reddit: (0 + 0)/2 EM; F1 (0 + 2/3)/2 = 1/3 -> 33.3
    # ("sky" vs "blue sky": P 1, R 1/2, F1 2/3).
    assert report["news"] == {"em": 100.0, "f1": 100.0, "turns": 1}
    assert report["reddit"] == {"em": 0.0, "f1": 33.3, "turns": 2}
    assert report["in_domain"] == {"em": 100.0, "f1": 100.0, "turns": 1}
    assert report["out_domain"] == {"em": 0.0, "f1": 33.3, "turns": 2}
    # overall: EM 1/3 -> 33.3; F1 (1 + 2/3)/3 = 5/9 -> 55.6
    assert report["overall"] == {"em": 33.3, "f1": 55.6, "turns": 3}
    with pytest.raises(ValueError):
        coqa.score_predictions({("s", 1): {"golds": ["x"], "source": "blogs"}}, {})


def test_coqa_prediction_file_round_trip(tmp_path):
    preds = {("s1", 1): "white", ("s1", 2): "in a barn"}
    records = coqa.prediction_records(preds)
    assert records[1] == {"id": "s1", "turn_id": 2, "answer": "in a barn"}
    path = tmp_path / "preds.json"
    path.write_text(json.dumps(records + [{"id": "s1", "turn_id": 1, "answer": "black"}]))
    # A repeated (id, turn_id) keeps the later answer.
    assert coqa.read_predictions_file(path) == {("s1", 1): "black", ("s1", 2): "in a barn"}


# ------------------------------------------------------------- TriviaQA

def test_triviaqa_normalize_special_characters():
    # "_" -> " ", lower, then each of ‘ ’ ´ ` and ASCII punctuation -> " ":
    # "the  beatles  song s  hey  jude " -> drop "the" -> collapse.
    assert triviaqa.normalize_answer("The ‘Beatles’_Song´s `Hey` Jude!") == "beatles song s hey jude"
    assert triviaqa.normalize_answer("O'Neill") == "o neill"  # replaced, unlike CoQA
    # Curly double quotes are not in the official set and survive.
    assert triviaqa.normalize_answer("“Hello”") == "“hello”"


def test_triviaqa_f1_and_em():
    # pred [sunset, blvd] vs gold [west, sunset, boulevard]: 1 shared,
    # P 1/2, R 1/3, F1 = 2 * (1/6) / (5/6) = 2/5.
    assert triviaqa.f1("Sunset Blvd.", "west sunset boulevard") == pytest.approx(0.4)
    # No empty-answer special case: zero shared tokens -> 0 even if both empty.
    assert triviaqa.f1("", "") == 0.0
    assert triviaqa.exact_match("", "") is True


def test_triviaqa_official_sample_aliases_and_alias_max():
    gold = triviaqa.load_official_json(json.loads(TRIVIAQA_SAMPLE.read_text(encoding="utf-8")))
    # NormalizedAliases only: the 5 raw Aliases collapse to 4 ("Sunset Blvd" = "Sunset Blvd.").
    assert sorted(gold) == ["tc_33"]
    aliases = gold["tc_33"]
    assert sorted(aliases) == ["sunset blvd", "sunset boulevard", "sunset bulevard", "west sunset boulevard"]
    # "Sunset Boulevard, the musical" -> [sunset, boulevard, musical]:
    # vs "sunset boulevard": P 2/3, R 1 -> F1 4/5; vs "west sunset boulevard": 2/3. Max 0.8.
    assert triviaqa.best_f1("Sunset Boulevard, the musical", aliases) == pytest.approx(0.8)
    assert triviaqa.best_exact_match("Sunset Boulevard, the musical", aliases) == 0.0
    assert triviaqa.best_exact_match("SUNSET BLVD.", aliases) == 1.0


def test_triviaqa_human_answers_and_verified_filter():
    answer = {"NormalizedAliases": ["x"], "HumanAnswers": ["The X-Men"]}
    assert triviaqa.gold_aliases(answer) == ["x", "x men"]
    obj = {"VerifiedEval": True, "Data": [
        {"QuestionId": "q1", "QuestionPartOfVerifiedEval": True, "Answer": {"NormalizedAliases": ["a1"]}},
        {"QuestionId": "q2", "QuestionPartOfVerifiedEval": False, "Answer": {"NormalizedAliases": ["a2"]}}]}
    assert triviaqa.load_official_json(obj) == {"q1": ["a1"]}


def test_triviaqa_score_divides_by_all_gold_questions():
    gold = {"q1": ["sunset boulevard"], "q2": ["paris"], "q3": ["david seville"]}
    preds = {"q1": "Sunset Boulevard", "q2": "Paris, France", "q9": "ignored"}
    # q1: EM 1, F1 1.  q2: EM 0, F1: pred [paris, france] vs [paris] -> P 1/2, R 1, F1 2/3.
    # q3 missing -> 0.  Denominator 3: EM 100/3, F1 100 * (5/3) / 3 = 55.56.
    result = triviaqa.score_predictions(gold, preds)
    assert result["exact_match"] == pytest.approx(100 / 3)
    assert result["f1"] == pytest.approx(500 / 9)
    assert (result["n"], result["n_missing"]) == (3, 1)


# -------------------------------------------------------- summarization

def test_split_sentences_tricky_cases():
    assert summarization.split_sentences("Mr. Smith went to Washington. He arrived at 3.5 p.m. on Monday.") == [
        "Mr. Smith went to Washington.", "He arrived at 3.5 p.m. on Monday."]
    assert summarization.split_sentences("The U.S. economy grew 3.5% last year. Analysts expected more.") == [
        "The U.S. economy grew 3.5% last year.", "Analysts expected more."]
    assert summarization.split_sentences('"I will not go," she said. "Never!" Then she left.') == [
        '"I will not go," she said.', '"Never!"', "Then she left."]
    assert summarization.split_sentences("First line\n\nSecond one. Third.") == [
        "First line", "Second one.", "Third."]
    assert summarization.split_sentences("   ") == []


def test_first_sentences():
    text = "One is here. Two is here. Three is here. Four is here."
    assert summarization.first_sentences(text) == "One is here. Two is here. Three is here."
    assert summarization.first_sentences(text, n=1) == "One is here."
    assert summarization.first_sentences("Only one.", n=3) == "Only one."
    assert summarization.first_sentences(text, n=2, sep="\n") == "One is here.\nTwo is here."


def test_rouge_on_known_strings():
    # pred the cat sat on the mat / ref the cat was on the mat (no token > 3 chars, no stemming):
    # unigrams: overlap the x2, cat, on, mat = 5 of 6 each side -> F 5/6.
    # bigrams: the-cat, on-the, the-mat shared of 5 each -> 3/5.
    # LCS "the cat on the mat" = 5 -> 5/6.
    scores = summarization.rouge_scores("the cat sat on the mat", "the cat was on the mat")
    assert scores["rouge1"] == pytest.approx(500 / 6)
    assert scores["rouge2"] == pytest.approx(60.0)
    assert scores["rougeL"] == pytest.approx(500 / 6)


def test_rouge_uses_stemming_and_order():
    # Porter stems: running -> run, dogs -> dog, runs -> run ("dog" has 3 chars, unstemmed).
    # pred [run, dog] vs ref [the, dog, run]: unigram P 1, R 2/3 -> F 0.8;
    # no shared bigram -> 0; LCS 1 -> P 1/2, R 1/3, F 0.4.
    scores = summarization.rouge_scores("running dogs", "the dog runs")
    assert scores == pytest.approx({"rouge1": 80.0, "rouge2": 0.0, "rougeL": 40.0})


def test_rouge_l_ignores_line_breaks():
    reference = "the cat was on the mat"
    spaced = summarization.rouge_scores("the cat sat. on the mat", reference)
    newlined = summarization.rouge_scores("the cat sat.\non the mat", reference)
    assert spaced == newlined


def test_rouge_l_is_summary_level():
    # ref sentences [the cat sat] [the dog ran]; pred has them in the other order.
    # One LCS over the whole text ("the cat sat the dog ran" vs "the dog ran the cat sat") is
    # 3 of 6 tokens: F 1/2.  Summary-level (ROUGE-1.5.5): each reference sentence's union LCS
    # with the predicted sentences is all 3 of its tokens: 6/6 -> 100.
    scores = summarization.rouge_scores("The dog ran. The cat sat.", "The cat sat. The dog ran.")
    assert scores["rougeL"] == pytest.approx(100.0)
    assert scores["rouge1"] == pytest.approx(100.0)
    # bigrams: pred {the-dog, dog-ran, ran-the, the-cat, cat-sat}, ref {the-cat, cat-sat, sat-the,
    # the-dog, dog-ran}: 4 of 5 shared -> 80.
    assert scores["rouge2"] == pytest.approx(80.0)


def test_aggregate_rouge():
    # means: r1 (80 + 40)/2 = 60, r2 (0 + 30)/2 = 15, rL (40 + 20)/2 = 30; avg (60+15+30)/3 = 35
    agg = summarization.aggregate_rouge([{"rouge1": 80, "rouge2": 0, "rougeL": 40},
                                         {"rouge1": 40, "rouge2": 30, "rougeL": 20}])
    assert agg == pytest.approx({"rouge1": 60.0, "rouge2": 15.0, "rougeL": 30.0, "rouge_avg": 35.0})
    with pytest.raises(ValueError):
        summarization.aggregate_rouge([])


@pytest.mark.parametrize("tokenized, expected", [
    ("Here are six of CNN 's best videos of the week .",
     "Here are six of CNN's best videos of the week."),
    ("Manuscript of `` American Pie '' lyrics is sold to unnamed buyer for $ 1.2 million .",
     'Manuscript of "American Pie" lyrics is sold to unnamed buyer for $1.2 million.'),
    ("The track runs from Kleine Scheidegg -LRB- 2061m -RRB- to Jungraujoch",
     "The track runs from Kleine Scheidegg (2061m) to Jungraujoch"),
    ("held at Hamilton Live in Washington , D.C. . The first lady",
     "held at Hamilton Live in Washington, D.C. The first lady"),
    ("Southwest Airlines tops Consumer Reports ' survey , with the most seats available .",
     "Southwest Airlines tops Consumer Reports' survey, with the most seats available."),
    ("A troll called ` fatalsplash ' then accused Alexis of being a ` gold digger ' who did n't have to work .",
     "A troll called 'fatalsplash' then accused Alexis of being a 'gold digger' who didn't have to work."),
    ("Nancy Perry wo n't teach again", "Nancy Perry won't teach again"),
    ("Homes with Waitrose nearby cost 12 % more", "Homes with Waitrose nearby cost 12% more"),
    ("champions around £ 12,000 .", "champions around £12,000."),
    ("Indications within a decade ; definitive evidence within `` 20 to 30 years , '' she said .",
     'Indications within a decade; definitive evidence within "20 to 30 years," she said.'),
    ("How does ISIS govern ? Robert Downey Jr. is n't the only celebrity",
     "How does ISIS govern? Robert Downey Jr. isn't the only celebrity"),
    ("`` Weird Al '' Yankovic : '' A legend , an inspiration , and a friend ''",
     '"Weird Al" Yankovic: "A legend, an inspiration, and a friend"'),
    ("marked with a number ' 3 ' The 10-year-old", "marked with a number '3' The 10-year-old"),
    ("a woman -- not a man -- was passing through", "a woman -- not a man -- was passing through"),
])
def test_detokenize_ptb_real_fragments(tokenized, expected):
    assert summarization.detokenize_ptb(tokenized) == expected


def test_detokenize_whole_frank_sample_leaves_no_ptb_artifacts():
    # Spaced single punctuation (" ." / " ," ...) must be gone; " ..." is kept on purpose.
    spaced_punct = re.compile(r" [.,;:?!%](\s|$)")
    for line in FRANK.read_text(encoding="utf-8").splitlines():
        text = summarization.detokenize_ptb(json.loads(line)["reference_tokenized"])
        assert not spaced_punct.search(text), text
        for artifact in (" 's ", " n't ", "-LRB-", "-RRB-", "``", "''", "$ ", "£ "):
            assert artifact not in text, (artifact, text)


def test_detokenizing_matters_for_rouge():
    # rouge-score splits on non-alphanumerics: "isn't" -> [isn, t], "is n't" -> [is, n, t].
    # pred [he, isn, t, here] vs raw ref [he, is, n, t, here]: 3 shared, P 3/4, R 3/5,
    # F1 = 2 * (9/20) / (27/20) = 2/3.  After detokenizing the reference: identical -> 100.
    raw = "he is n't here"
    assert summarization.rouge_scores("he isn't here", raw)["rouge1"] == pytest.approx(200 / 3)
    assert summarization.rouge_scores("he isn't here", summarization.detokenize_ptb(raw))["rouge1"] == 100.0
