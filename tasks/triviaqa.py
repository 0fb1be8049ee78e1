"""TriviaQA without context (open-domain QA). Not in the GPT-2 paper, which reports no TriviaQA
number (its QA experiment is Natural Questions): the reference row stays empty.

Data: the hub's mandarjoshi/trivia_qa `rc.nocontext` validation split (17,944 rows). Local files,
first found: `triviaqa/llmfoundry_triviaqa_small.jsonl` (the split's first 32 questions in
llm-foundry's JSONL; no ids, so ids are `line<N>`), `triviaqa/triviaqa_sample.json` (one question
in the official JSON format, `{"Data": [...]}`); both are subsets. A repeated QuestionId is scored
once, as in the official script's dict of predictions.

Prompt: "Q: {question}\\nA:". Decoding: greedy, at most 24 new tokens, stopped at the first
newline; the answer is that first line, stripped.
Metrics: the official triviaqa_evaluation.py exact match and F1 (its normalisation, max over the
gold aliases: NormalizedAliases + HumanAnswers), in percent. predictions/triviaqa.json is the
official prediction file, a dict from question id to answer.
Intervals (gpt2eval.api.uncertainty): exact match analytic (lm-evaluation-harness's binomial standard
error), F1 bootstrapped, both over questions.
"""
from gpt2eval.api.data import Dataset, sha256_text
from gpt2eval.metrics import triviaqa
from gpt2eval.api.requests import Generation
from gpt2eval.api.task import Metric, Scored, Task
from gpt2eval.api.uncertainty import binomial, mean

JSONL, OFFICIAL = "triviaqa/llmfoundry_triviaqa_small.jsonl", "triviaqa/triviaqa_sample.json"
HUB = ("mandarjoshi/trivia_qa", "rc.nocontext", "validation")
N_QUESTIONS = 17944
MAX_NEW_TOKENS = 24  # answers are names and short phrases


def record_from_hub(row: dict) -> dict:
    """A hub row (question, question_id, answer: {aliases, normalized_aliases, value, ...}) as a
    record of the official JSON format, so that both go through the official alias rules."""
    answer = row["answer"]
    return {"QuestionId": row["question_id"], "Question": row["question"],
            "Answer": {"Aliases": answer["aliases"], "NormalizedAliases": answer["normalized_aliases"],
                       "Value": answer["value"]}}


def prompt(ex: dict) -> str:
    return f"Q: {ex['question']}\nA:"


class TriviaQA(Task):
    name = "triviaqa"
    description = "TriviaQA rc.nocontext validation: 'Q: ...\\nA:', greedy, official EM/F1 (not in the paper)"
    metrics = {"exact_match": Metric("triviaqa/exact_match", "official EM, max over aliases (paper: none)"),
               "f1": Metric(None, "official F1, max over aliases")}
    protocol = {
        "prompt": "Q: {question}\\nA:",
        "decoding": f"greedy, <= {MAX_NEW_TOKENS} new tokens, stop at the first newline; answer = first line, stripped",
        "metric": "official triviaqa_evaluation.py normalisation, max over aliases, an alias that normalisation "
                  "erases compared lower-cased only (gpt2eval.metrics.guarded); percent",
    }

    def load(self, data):
        for relpath in (JSONL, OFFICIAL):
            path = data.find(relpath)
            if path:
                source = data.file_source(path, relpath)
                return Dataset(triviaqa.read_gold_file(path), n_full=N_QUESTIONS, source=source)
        rows = data.hub(*HUB)
        questions = triviaqa.questions_from_official({"Data": [record_from_hub(r) for r in rows]})
        return Dataset(questions, n_full=len(questions), source=data.hub_source(*HUB, rows))

    def requests(self, examples):
        return {"answer": [Generation(prompt(ex), MAX_NEW_TOKENS, stop=("\n",), seed_key=f"triviaqa/{ex['id']}")
                           for ex in examples]}

    def score(self, examples, answers):
        results = answers["answer"]
        preds = {ex["id"]: r.text.strip() for ex, r in zip(examples, results, strict=True)}
        gold = {ex["id"]: ex["aliases"] for ex in examples}
        samples = [{"id": ex["id"], "question": ex["question"], "prompt_sha256": sha256_text(prompt(ex)),
                    "generated": r.raw_text, "answer": preds[ex["id"]], "aliases": ex["aliases"],
                    "exact_match": 100 * triviaqa.best_exact_match(preds[ex["id"]], ex["aliases"]),
                    "f1": 100 * triviaqa.best_f1(preds[ex["id"]], ex["aliases"])}
                   for ex, r in zip(examples, results)]
        scores = triviaqa.score_predictions(gold, preds)
        metrics = {"exact_match": scores["exact_match"], "f1": scores["f1"]}
        scored_once = list({s["id"]: s for s in samples}.values())  # one per question id, as the metric counts
        spread = {"exact_match": binomial([s["exact_match"] / 100 for s in scored_once], unit="question"),
                  "f1": mean([s["f1"] for s in scored_once], unit="question")}
        return Scored(metrics, samples, extra={"n_scored": scores["n"]}, files={"predictions/triviaqa.json": preds},
                      spread=spread)
