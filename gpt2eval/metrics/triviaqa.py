"""TriviaQA scoring with the semantics of the official ``triviaqa_evaluation.py``.

Behaviours kept from the official script (mandarjoshi90/triviaqa):

* Normalization differs from SQuAD/CoQA: underscores become spaces, and every
  punctuation character -- ``string.punctuation`` plus the typographic
  apostrophes ``‘ ’ ´`` and the backtick -- is *replaced by a space*, not
  deleted.  So "O'Neill" -> "o neill".  Curly double quotes are not in the set
  and survive normalization.
* Gold answers are ``Answer["NormalizedAliases"]`` plus the normalized
  ``Answer["HumanAnswers"]`` when present (not ``Aliases`` and not ``Value``).
  Both prediction and gold are normalized again before comparing, so raw
  aliases (e.g. the llm-foundry JSONL) score identically to normalized ones.
* EM and F1 of a question are the max over its gold answers.  F1 has no
  special case for empty answers: zero shared tokens gives 0.
* Percentages divide by the number of *gold* questions: a question without a
  prediction scores 0 but still counts.  Predictions for unknown ids are ignored.
* If the file says ``VerifiedEval`` is true, only questions with
  ``QuestionPartOfVerifiedEval`` are kept, as the official reader does.

One departure, on by default (``guard=False`` restores the script): an alias
that normalization erases ("'A", "(a", ".a", "+-*/": five questions of the
unfiltered validation set) is compared only lower-cased
(:func:`gpt2eval.metrics.guarded`), so "a" or "the" no longer matches it; in
the official JSON, whose ``NormalizedAliases`` are already normalized, such an
alias is "" and is left out (:func:`gold_aliases`).
"""

from __future__ import annotations

import re
import string

from . import guarded, token_f1

_PUNCTUATION = frozenset(string.punctuation + "\u2018\u2019\u00b4`")
_ARTICLES = re.compile(r"\b(a|an|the)\b")


def normalize_answer(s: str) -> str:
    """Underscores to spaces, lower-case, punctuation to spaces, drop articles, collapse spaces."""
    text = s.replace("_", " ").lower()
    text = "".join(" " if ch in _PUNCTUATION else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def exact_match(prediction: str, ground_truth: str, guard: bool = True) -> bool:
    """True when both strings normalize to the same text."""
    pred, gold = guarded(normalize_answer, prediction, ground_truth, guard)
    return pred == gold


def f1(prediction: str, ground_truth: str, guard: bool = True) -> float:
    """Token-multiset F1 of the normalized strings; 0 when nothing is shared."""
    pred, gold = guarded(normalize_answer, prediction, ground_truth, guard)
    return token_f1(pred.split(), gold.split())


def best_exact_match(prediction: str, aliases: list[str], guard: bool = True) -> float:
    """Max EM over the aliases (1.0 or 0.0)."""
    if not aliases:
        raise ValueError("a TriviaQA question needs at least one gold alias")
    return float(max(exact_match(prediction, a, guard) for a in aliases))


def best_f1(prediction: str, aliases: list[str], guard: bool = True) -> float:
    """Max F1 over the aliases."""
    if not aliases:
        raise ValueError("a TriviaQA question needs at least one gold alias")
    return max(f1(prediction, a, guard) for a in aliases)


def gold_aliases(answer: dict, guard: bool = True) -> list[str]:
    """The official ground-truth list for one ``Answer`` object. Guarded, an alias already
    normalized to "" is left out: its text is lost, so the guard cannot compare it lower-cased,
    and kept it would equal every answer that normalizes to "" ("a", "the")."""
    human = [normalize_answer(a) for a in answer.get("HumanAnswers", [])]
    golds = list(answer["NormalizedAliases"]) + human
    return [g for g in golds if g.strip()] if guard else golds


def load_official_json(obj: dict) -> dict:
    """Map QuestionId -> gold aliases for a parsed official TriviaQA JSON file.

    Keyed by question only.  (For the Web domain the official script keys by
    (QuestionId, evidence filename) and scores each document separately; a
    closed-book model sees no documents, so one entry per question is the
    meaningful unit.)
    """
    records = obj["Data"]
    if obj.get("VerifiedEval"):
        records = [r for r in records if r.get("QuestionPartOfVerifiedEval")]
    return {r["QuestionId"]: gold_aliases(r["Answer"]) for r in records}


def questions_from_official(obj: dict) -> list[dict]:
    """``{"id", "question", "aliases"}`` per question of a parsed official JSON file, with the
    same ids, aliases and filtering as :func:`load_official_json` (a repeated QuestionId keeps
    its first position and its last record, as that dict comprehension does)."""
    records = obj["Data"]
    if obj.get("VerifiedEval"):
        records = [r for r in records if r.get("QuestionPartOfVerifiedEval")]
    out = {}
    for r in records:
        out[r["QuestionId"]] = {"id": r["QuestionId"], "question": r["Question"], "aliases": gold_aliases(r["Answer"])}
    return list(out.values())


def questions_from_jsonl(rows: list[dict]) -> list[dict]:
    """Questions of the llm-foundry JSONL format: ``{"context": "Question: <q>\\nAnswer:",
    "answer", "aliases"}``. The rows carry no QuestionId: a row's id is ``line<N>`` (1-based),
    unless it has a ``question_id``/``id`` field. Its raw aliases are the golds (plus
    ``answer``); both sides are normalized when compared, so this scores like NormalizedAliases."""
    out = {}
    for n, row in enumerate(rows, 1):
        context = row["context"]
        if not (context.startswith("Question:") and context.rstrip().endswith("Answer:")):
            raise ValueError(f"row {n}: context is not 'Question: ...\\nAnswer:'")
        question = context.strip()[len("Question:"):-len("Answer:")].strip()
        aliases = list(dict.fromkeys(list(row.get("aliases") or []) + ([row["answer"]] if row.get("answer") else [])))
        if not aliases:
            raise ValueError(f"row {n}: no answer or aliases")
        qid = str(row.get("question_id") or row.get("id") or f"line{n}")
        out[qid] = {"id": qid, "question": question, "aliases": aliases}
    return list(out.values())


def read_gold_file(path) -> list[dict]:
    """Questions of a gold file: llm-foundry JSONL by its extension, else official JSON. The
    triviaqa task and `run_eval.py score` both read gold files with this, so ids agree."""
    from ..api.data import read_json, read_jsonl
    from ..errors import DataError
    try:
        if str(path).endswith(".jsonl"):
            return questions_from_jsonl(read_jsonl(path))
        return questions_from_official(read_json(path))
    except (KeyError, TypeError, ValueError, AttributeError) as e:
        raise DataError(f"{path}: not TriviaQA data in the official JSON ({{'Data': [...]}}) or llm-foundry "
                        f"JSONL format ({type(e).__name__}: {e})") from None


def score_predictions(gold_by_qid: dict, preds: dict) -> dict:
    """EM and F1 in percent over all gold questions, plus counts.

    Returns ``{"exact_match", "f1", "n", "n_missing"}`` where ``n`` is the
    number of gold questions (the denominator) and ``n_missing`` how many had
    no prediction (each scored 0).  Values are not rounded, as in the official
    script.
    """
    em_total = f1_total = 0.0
    n_missing = 0
    for qid, aliases in gold_by_qid.items():
        if qid not in preds:
            n_missing += 1
            continue
        em_total += best_exact_match(preds[qid], aliases)
        f1_total += best_f1(preds[qid], aliases)
    n = len(gold_by_qid)
    if n == 0:
        raise ValueError("no gold questions to score")
    return {"exact_match": 100.0 * em_total / n, "f1": 100.0 * f1_total / n,
            "n": n, "n_missing": n_missing}
