"""Natural Questions, open domain (the paper's Section 3.8): short factoid answers, closed book.

Data: the NQ-open development set, `nq_open/NQ-open.dev.jsonl` (3,610 questions, the hub's
google-research-datasets/nq_open validation split; lower-cased questions, a list of short gold
answers each). The paper used "the development set of Natural Questions" (Table 5).
Prompt: the paper only says "the context of the language model is seeded with example question
answer pairs"; how many and which are not given. Chosen here: the first N_SHOTS = 8 questions of
the source below, each with its first gold answer, as
    Q: {question}\\nA: {answer}\\n  (x 8)  then  Q: {question}\\nA:
Questions are used as the file writes them (lower case, no question mark).
Source of the example pairs (a scored question is never its own example):
- hub: the first 8 questions of nq_open `train`; all 3,610 dev questions are scored;
- local file (no train split offline): the first 8 dev questions, which are then left out of
  scoring, so n_full = 3,602 and the data source says so.
Decoding: greedy, at most 16 new tokens, stopped at the first newline; answer = that line, stripped.
Metric: exact match after SQuAD v1.1 normalisation against any gold answer (the paper's metric),
in percent; SQuAD F1 beside it. The example pairs are every prompt's shared `prefix`.
Intervals (gpt2eval.api.uncertainty): exact match binomial over questions, F1 bootstrapped over them.
"""
from gpt2eval.api.data import Dataset, sha256_text
from gpt2eval.metrics import squad
from gpt2eval.api.requests import Generation
from gpt2eval.api.task import Metric, Scored, Task
from gpt2eval.api.uncertainty import binomial, mean

LOCAL = "nq_open/NQ-open.dev.jsonl"
HUB = "google-research-datasets/nq_open"
N_DEV, N_SHOTS, MAX_NEW_TOKENS = 3610, 8, 16  # gold answers are at most a few words


def from_hub(rows) -> list[dict]:
    return [{"line": i + 1, "question": r["question"], "answers": list(r["answer"])} for i, r in enumerate(rows)]


def shots_text(shots) -> str:
    return "".join(f"Q: {q['question']}\nA: {q['answers'][0]}\n" for q in shots)


def prompt(ex: dict) -> str:
    return f"{ex['shots']}Q: {ex['question']}\nA:"


class NaturalQuestions(Task):
    name = "natural_questions"
    description = "Natural Questions (NQ-open dev): 8 example Q/A pairs + 'Q: ...\\nA:', greedy, SQuAD exact match"
    metrics = {"exact_match": Metric("natural_questions/exact_match", "SQuAD v1.1 EM, any gold, greedy first line"),
               "f1": Metric(None, "SQuAD v1.1 F1, max over golds")}
    protocol = {
        "examples": f"{N_SHOTS} pairs (question, first gold answer): the first {N_SHOTS} of nq_open train (hub), "
                    f"else the first {N_SHOTS} dev questions, then left out of scoring (local file)",
        "prompt": "'Q: {q}\\nA: {a}\\n' per example pair, then 'Q: {question}\\nA:'",
        "decoding": f"greedy, <= {MAX_NEW_TOKENS} new tokens, stop at the first newline; answer = first line, stripped",
        "metric": "exact match after SQuAD v1.1 normalisation, max over gold answers; percent",
    }

    def load(self, data):
        path = data.find(LOCAL)
        if path:
            questions = squad.read_nq_open(path)
            shots, scored = questions[:N_SHOTS], questions[N_SHOTS:]
            source = {**data.file_source(path, LOCAL), "examples_from": f"{LOCAL}, lines 1-{N_SHOTS} (not scored)"}
        else:
            scored = from_hub(data.hub(HUB, None, "validation"))
            shots = from_hub(data.hub(HUB, None, "train"))[:N_SHOTS]
            source = {**data.hub_source(HUB, None, "validation"), "examples_from": f"{HUB} train, rows 1-{N_SHOTS}"}
        source["examples"] = [[q["question"], q["answers"][0]] for q in shots]
        text = shots_text(shots)
        return Dataset([{**q, "shots": text} for q in scored], n_full=len(scored), source=source)

    def requests(self, examples):
        return {"answer": [Generation(prompt(ex), MAX_NEW_TOKENS, stop=("\n",), prefix=ex["shots"], truncate="left",
                                      seed_key=f"natural_questions/{ex['line']}") for ex in examples]}

    def score(self, examples, answers):
        results, samples = answers["answer"], []
        for ex, r in zip(examples, results, strict=True):
            answer = r.text.strip()
            samples.append({"line": ex["line"], "question": ex["question"], "prompt_sha256": sha256_text(prompt(ex)),
                            "prompt_tokens": r.prompt_tokens, "truncated_tokens": r.truncated_tokens,
                            "generated": r.raw_text, "answer": answer, "golds": ex["answers"],
                            "exact_match": 100 * squad.best_exact_match(answer, ex["answers"]),
                            "f1": 100 * squad.best_f1(answer, ex["answers"])})
        n = len(samples)
        metrics = {m: sum(s[m] for s in samples) / n for m in ("exact_match", "f1")}
        preds = {s["question"]: s["answer"] for s in samples}
        spread = {"exact_match": binomial([s["exact_match"] / 100 for s in samples], unit="question"),
                  "f1": mean([s["f1"] for s in samples], unit="question")}
        return Scored(metrics, samples, extra={"n_truncated": sum(r.truncated_tokens > 0 for r in results)},
                      files={"predictions/natural_questions.json": preds}, spread=spread)
