"""CoQA: conversational question answering about a story (the paper's reading-comprehension test).

Data: the official dev file `coqa/coqa-dev-v1.0.json` (500 stories, 7,983 questions); else the
one-story file `coqa/coqa-dev-v1.0_first_story.json` (12 questions, a subset: n_full stays 7,983);
else the hub's stanfordnlp/coqa validation split. The hub copy has no story ids and no additional
answers: ids become "validation-<row>" and each turn is scored against its one answer, which is not
the official 4-answer leave-one-out F1 (the data source records this). One example per question,
in file order: --limit counts questions.

Prompt (the paper conditions on "the document, the history of the associated dialogue, and a final
token A:"); earlier turns carry their gold answers:
    {story}\\n\\nQ: {q1}\\nA: {a1}\\nQ: {q2}\\nA:
Decoding: greedy, at most 32 new tokens, stopped at the first newline; the answer is that first
line, stripped. A prompt too long for the window loses its first tokens, i.e. the story's start
(the dialogue and the question are far shorter than the window); `extra` counts such turns.
Metrics: the official evaluate-v1.0.py F1 and EM (its normalisation, leave-one-out over the gold
answers), in percent, overall, in/out of domain and per source domain present. The paper's section
4 says "CoQA's development set metric reports the average performance over 5 different domains":
`f1_domain_mean`, the unweighted mean of the per-domain F1 over the domains present (the dev set's
five), is compared with the paper's 55 beside the turn-weighted `f1`. Answer extraction
variants on the same generations (no extra compute), each compared with the paper's 55 like `f1`:
`f1_first_sentence` (the answer line's first sentence, pysbd) and `f1_first5words` (its first 5
words), with their EMs; long answers are the known failure (openai/gpt-2 issue 307: 28.7 F1 for
gpt2-xl, "good answers" scored low). gpt2eval.metrics.coqa has the details.
Option `prompt=lm_eval`: lm-evaluation-harness's layout (its tasks/coqa utils.py), a blank line
between every question and answer as well as between turns,
    {story}\\n\\nQ: {q1}\\n\\nA: {a1}\\n\\nQ: {q2}\\n\\nA:
generation stopped at "\\nQ:", and the answer = the generation stripped, up to its first newline
(lm-eval's process_results). Everything else, metrics and answer variants included, is unchanged;
unlike lm-eval, which scores only each story's last turn, every turn is scored.
predictions/<key>.json (<key> the task's file stem) is in the official prediction format, for the
official script.
The story is each request's `prefix`: the engine forwards it once per story, not once per turn.
"""
from gpt2eval.api.data import Dataset, read_json, sha256_text
from gpt2eval.errors import DataError
from gpt2eval.metrics import coqa
from gpt2eval.api.requests import Generation
from gpt2eval.api.task import Metric, Option, Scored, Task
from gpt2eval.api.uncertainty import binomial, mean

FULL, ONE_STORY = "coqa/coqa-dev-v1.0.json", "coqa/coqa-dev-v1.0_first_story.json"
N_QUESTIONS = 7983
MAX_NEW_TOKENS = 32  # gold answers are short (a few words); a longer line is cut here
GROUPS = ["in_domain", "out_domain"] + list(coqa.DOMAIN_NAMES.values())


def story_from_hub(row: dict, index: int) -> dict:
    """A hub row (source, story, questions: [str], answers: {input_text, answer_start,
    answer_end}: [..]) as a story of the official file (one answer per turn)."""
    answers = row["answers"]
    spans = zip(answers["input_text"], answers["answer_start"], answers["answer_end"])
    return {"source": row["source"], "id": f"validation-{index}", "story": row["story"],
            "questions": [{"input_text": q, "turn_id": t} for t, q in enumerate(row["questions"], 1)],
            "answers": [{"input_text": a, "span_start": s, "span_end": e, "turn_id": t}
                        for t, (a, s, e) in enumerate(spans, 1)]}


def turns(data: dict) -> list[dict]:
    """One example per question of an official-format CoQA object, with the turns before it."""
    gold = coqa.load_gold(data)
    out = []
    for story in data["data"]:
        history = []
        for q, a in zip(story["questions"], story["answers"]):
            out.append({"id": story["id"], "turn_id": q["turn_id"], "story": story["story"].strip(),
                        "history": tuple(history), "question": q["input_text"], **gold[(story["id"], q["turn_id"])]})
            history.append((q["input_text"], a["input_text"]))
    return out


# prompt option -> (what follows each question and each answer, the stop string)
LAYOUTS = {"paper": ("\n", "\n"), "lm_eval": ("\n\n", "\nQ:")}


def prompt(ex: dict, layout: str = "paper") -> str:
    # The story is stripped so that it ends on a word or punctuation: its tokens are then also
    # the first tokens of the full prompt, which is what lets the engine reuse them.
    sep = LAYOUTS[layout][0]
    dialogue = "".join(f"Q: {q}{sep}A: {a}{sep}" for q, a in ex["history"])
    return f"{ex['story']}\n\n{dialogue}Q: {ex['question']}{sep}A:"


class CoQA(Task):
    name = "coqa"
    description = "CoQA dev: story + dialogue history + 'A:', greedy, official F1/EM"
    options = {"prompt": Option("paper", "paper: Q:/A: lines after the story, answer = the first line; lm_eval: "
                                         "lm-evaluation-harness's layout, blank lines between Q and A",
                                choices=tuple(LAYOUTS))}
    metrics = {"f1": Metric("coqa/f1", "official evaluate-v1.0.py F1, greedy first line"),
               "f1_domain_mean": Metric("coqa/f1", "official F1, unweighted mean over the domains (the paper: "
                                                   "'average performance over 5 different domains')"),
               "em": Metric(None, "official evaluate-v1.0.py EM")}
    metrics.update({f"{m}_{g}": Metric(None, f"official {m.upper()}, {g}") for g in GROUPS for m in ("f1", "em")})
    metrics.update({f"{m}_{suffix}": Metric("coqa/f1" if m == "f1" else None, f"official {m.upper()}, answer = {what}")
                    for suffix, (what, _) in coqa.EXTRACTIONS.items() for m in ("f1", "em")})
    base_protocol = {
        "truncation": f"prompt cut from the left (story start) to leave {MAX_NEW_TOKENS} tokens of the window",
        "metric": "official CoQA evaluate-v1.0.py: normalisation, leave-one-out over gold answers; percent; "
                  "guarded: a gold that normalisation erases is compared lower-cased only (gpt2eval.metrics.guarded)",
        "answer_variants": "f1/em_first_sentence: first sentence (pysbd) of the answer line; f1/em_first5words: "
                           "its first 5 words (openai/gpt-2 issue 307: long answers)",
    }

    @property
    def protocol(self):
        if self.prompt == "lm_eval":
            layout = {"prompt": "{story}\\n\\n + 'Q: {q}\\n\\nA: {gold a}\\n\\n' per earlier turn + "
                                "'Q: {q}\\n\\nA:' (lm-evaluation-harness coqa)",
                      "decoding": f"greedy, <= {MAX_NEW_TOKENS} new tokens, stop at '\\nQ:'; answer = output "
                                  "stripped, up to its first newline (lm-eval)"}
        else:
            layout = {"prompt": "{story}\\n\\n + 'Q: {q}\\nA: {gold a}\\n' per earlier turn + 'Q: {q}\\nA:'",
                      "decoding": f"greedy, <= {MAX_NEW_TOKENS} new tokens, stop at the first newline; answer = "
                                  "first line, stripped"}
        return {**layout, **self.base_protocol}

    def prompt_text(self, ex: dict) -> str:
        return prompt(ex, self.prompt)

    def answer(self, text: str) -> str:
        """The answer of a generation (already cut at the stop string): its first line, stripped."""
        return text.strip().split("\n")[0].strip()

    def load(self, data):
        for relpath in (FULL, ONE_STORY):
            path = data.find(relpath)
            if path:
                obj, source = read_json(path), data.file_source(path, relpath)
                break
        else:
            rows = data.hub("stanfordnlp/coqa", None, "validation")
            obj = {"data": [story_from_hub(row, i) for i, row in enumerate(rows)]}
            source = {**data.hub_source("stanfordnlp/coqa", None, "validation", rows),
                      "note": "hub copy: no story ids (validation-<row>), one gold answer per turn"}
            path = "stanfordnlp/coqa"
        try:
            examples = turns(obj)
        except (KeyError, TypeError, IndexError, AttributeError) as e:
            raise DataError(f"{path}: not CoQA data in the official format ({type(e).__name__}: {e})") from None
        return Dataset(examples, n_full=N_QUESTIONS, source=source)

    def requests(self, examples):
        stop = (LAYOUTS[self.prompt][1],)
        return {"answer": [Generation(self.prompt_text(ex), MAX_NEW_TOKENS, stop=stop, prefix=ex["story"],
                                      truncate="left", seed_key=f"coqa/{ex['id']}/{ex['turn_id']}") for ex in examples]}

    def score(self, examples, answers):
        results = answers["answer"]  # one generation per turn
        keys = [(ex["id"], ex["turn_id"]) for ex in examples]
        preds = {k: self.answer(r.text) for k, r in zip(keys, results)}
        gold = {k: {"golds": ex["golds"], "source": ex["source"]} for k, ex in zip(keys, examples)}
        samples = []
        for ex, r, k in zip(examples, results, keys, strict=True):
            em, f1 = coqa.score_turn(ex["golds"], preds[k])
            text = self.prompt_text(ex)
            row = {"id": ex["id"], "turn_id": ex["turn_id"], "source": ex["source"],
                   "prompt_chars": len(text), "prompt_sha256": sha256_text(text),
                   "prompt_tokens": r.prompt_tokens, "truncated_tokens": r.truncated_tokens,
                   "question": ex["question"], "generated": r.raw_text, "answer": preds[k],
                   "golds": ex["golds"], "em": 100 * em, "f1": 100 * f1}
            for suffix, (_, extract) in coqa.EXTRACTIONS.items():
                short = extract(preds[k])
                em_x, f1_x = coqa.score_turn(ex["golds"], short)
                row.update({f"answer_{suffix}": short, f"em_{suffix}": 100 * em_x, f"f1_{suffix}": 100 * f1_x})
            samples.append(row)
        report = coqa.score_predictions(gold, preds, ndigits=None)
        metrics = {**coqa.flat_metrics(report), "f1_domain_mean": coqa.domain_mean(report),
                   **coqa.extraction_metrics(gold, preds)}
        extra = {"official_report": coqa.score_predictions(gold, preds),
                 "n_truncated": sum(r.truncated_tokens > 0 for r in results)}
        spread = {}  # intervals over questions (a story's turns are not independent: a lower bound)
        for group in ["", "_in_domain", "_out_domain"] + [f"_{d}" for d in coqa.DOMAIN_NAMES.values()]:
            rows = [s for s in samples if group in ("", f"_{coqa.DOMAIN_NAMES[s['source']]}",
                                                    "_in_domain" if s["source"] in coqa.IN_DOMAIN else "_out_domain")]
            if rows:
                spread[f"f1{group}"] = mean([s["f1"] for s in rows], unit="question")
                spread[f"em{group}"] = binomial([s["em"] / 100 for s in rows], unit="question")
        spread["f1_domain_mean"] = coqa.domain_mean_spread([(s["source"], s["f1"]) for s in samples])
        for suffix in coqa.EXTRACTIONS:  # the answer-extraction variants, on the same questions
            spread[f"f1_{suffix}"] = mean([s[f"f1_{suffix}"] for s in samples], unit="question")
            spread[f"em_{suffix}"] = binomial([s[f"em_{suffix}"] / 100 for s in samples], unit="question")
        files = {f"predictions/{self.file_stem}.json": coqa.prediction_records(preds)}
        return Scored(metrics, samples, extra, files=files, spread=spread)

