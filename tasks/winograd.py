"""Winograd Schema Challenge, WSC273 (Levesque et al. 2012), scored as Trinh & Le (2018) do.

Data: `winograd/llmfoundry_winograd_wsc.jsonl` (273 schemas in substitution form: the sentence up to
the pronoun with each candidate put in its place, and the rest of the sentence; its substitutions
are hand-made, e.g. "it" -> "the suitcase" for the XML's "the brown suitcase"), else the first 273
schemas of the original `winograd/WSCollection.xml`, else the hub's ErnestSDavis/winograd_wsc
(`wsc273`, test; its main branch is a loading script that datasets 4 refuses, so the hub's parquet
export, revision refs/convert/parquet, is read). From the XML and the hub, gpt2eval substitutes by
rule: the answer in place of the pronoun, a leading The/A/An lower-cased unless the pronoun starts a
sentence, "'s" added for his/her/its/their; these agree with llm-foundry's on 143 of 273 schemas
(tests/test_tasks_paper_mc.py), so the source is recorded with the result.

Protocol (Trinh & Le 2018; the GPT-2 paper, section 3.4, "follow[s] their problem formulation"):
- full scoring: log p(whole sentence with the candidate substituted), from <|endoftext|>;
- partial scoring: log p(rest of the sentence | its substituted beginning), the candidate excluded;
a space joins beginning and rest unless the rest starts with punctuation. The higher summed
log-probability wins (ties: the first candidate). The paper reports 70.70% for its largest model
and shows both scorings in its Figure 3; its text does not say which the 70.70 is, but the GPT-3
paper (Brown et al. 2020, section 3.4) says its WSC273 test used "the same 'partial evaluation'
method described in [GPT-2]". So `acc_partial` is compared with 70.70, and `acc_full` is a variant
without a paper value; their difference on the same schemas is reported (paired).
"""
import xml.etree.ElementTree as ET

from gpt2eval.protocols import multiple_choice as mc
from gpt2eval.api.data import Dataset, read_jsonl
from gpt2eval.errors import DataError
from gpt2eval.api.task import Metric, Scored, Task
from gpt2eval.api.uncertainty import binomial

JSONL, XML = "winograd/llmfoundry_winograd_wsc.jsonl", "winograd/WSCollection.xml"
HUB, PARQUET = "ErnestSDavis/winograd_wsc", "refs/convert/parquet"
POSSESSIVE = {"his", "her", "its", "their"}


def spaced(rest: str) -> str:
    """The rest of a sentence as a continuation: a leading space unless it starts with punctuation."""
    return rest if rest[:1] in ".,;:!?'" else " " + rest


def join(beginning: str, rest: str) -> str:
    return beginning + spaced(rest)


def substitute(before: str, pronoun: str, answer: str) -> str:
    words, before = answer.split(), " ".join(before.split())
    if before and before[-1] not in ".!?" and words[0] in ("The", "A", "An"):
        words[0] = words[0].lower()
    cand = " ".join(words) + ("'s" if pronoun.lower() in POSSESSIVE and not answer.endswith("'s") else "")
    return join(before, cand) if before else cand


def from_xml(path) -> list[dict]:
    try:
        schemas = ET.parse(path).getroot().findall("schema")[:273]
    except ET.ParseError as e:
        raise DataError(f"{path}, line {e.position[0]}: not valid XML ({e}); restore the original file") from None
    rows = []
    for n, s in enumerate(schemas, 1):
        try:
            t1, pron, t2 = (" ".join((s.find(f"text/{k}").text or "").split()) for k in ("txt1", "pron", "txt2"))
            answers = [a.text for a in s.findall("answers/answer")]
            if len(answers) != 2 or not all(a and a.strip() for a in answers):
                raise ValueError("two answers")
            gold = "AB".index(s.find("correctAnswer").text.strip().rstrip(".")[:1])
        except (AttributeError, ValueError):
            raise DataError(f"{path}, schema {n}: needs text/txt1, pron, txt2, two answers and correctAnswer "
                            "A or B") from None
        rows.append({"context_options": [substitute(t1, pron, a) for a in answers], "continuation": t2, "gold": gold})
    return rows


def from_hub(rows) -> list[dict]:
    return [{"context_options": [substitute(r["text"][:r["pronoun_loc"]], r["pronoun"], o) for o in r["options"]],
             "continuation": " ".join(r["text"][r["pronoun_loc"] + len(r["pronoun"]):].split()), "gold": r["label"]}
            for r in rows]


class Winograd(Task):
    name = "winograd"
    description = "Winograd Schema Challenge (WSC273), full and partial scoring (Trinh & Le 2018)"
    metrics = {"acc_partial": Metric("winograd/acc", "partial scoring: the rest of the sentence (Trinh & Le); "
                                                     "the paper's, per the GPT-3 paper, section 3.4"),
               "acc_full": Metric(None, "full scoring: the whole substituted sentence (Trinh & Le); no paper value")}
    protocol = {"data": f"{JSONL} (substitutions by llm-foundry), else {XML} / {HUB} (substituted by rule)",
                "full": "sum log p(substituted sentence | <|endoftext|>)",
                "partial": "sum log p(rest of sentence | substituted beginning); the paper's 70.70 (GPT-3 paper, "
                           "section 3.4: 'the same partial evaluation method described in [GPT-2]')",
                "join": "one space unless the rest starts with punctuation", "ties": "first candidate"}

    def load(self, data):
        path, xml = data.find(JSONL), data.find(XML)
        if path:
            rows, source = read_jsonl(path, ("context_options", "continuation", "gold")), data.file_source(path, JSONL)
            for n, r in enumerate(rows, 1):
                if len(r["context_options"]) != 2 or r["gold"] not in (0, 1) or not r["continuation"].strip():
                    raise DataError(f"{path}, line {n}: needs two context_options, a continuation and gold 0 or 1")
        elif xml:
            rows, source = from_xml(xml), data.file_source(xml, XML)
        else:
            rows, source = self.hub_rows(data)
        source["substitutions"] = "llm-foundry (hand-made)" if path else "gpt2eval rules"
        return Dataset([self.questions(r) for r in rows], n_full=273, source=source)

    @staticmethod
    def hub_rows(data):
        try:
            hub = data.hub(HUB, "wsc273", "test", revision=PARQUET)
        except DataError as e:
            raise DataError(f"{e} (its main branch is a loading script, which datasets 4 no longer runs, so its "
                            f"parquet export {PARQUET} was asked for)") from None
        return from_hub(hub), {**data.hub_source(HUB, "wsc273", "test", hub), "revision": PARQUET}

    @staticmethod
    def questions(row) -> tuple[mc.Question, mc.Question]:
        beginnings, rest, gold = row["context_options"], row["continuation"].strip(), int(row["gold"])
        partial = mc.Question.shared_continuation(beginnings, spaced(rest), gold)
        full = mc.Question(tuple(("", join(b, rest)) for b in beginnings), gold)
        return partial, full

    def requests(self, examples):
        return {"partial": mc.requests([p for p, _ in examples]), "full": mc.requests([f for _, f in examples])}

    def score(self, examples, answers):
        partial = mc.answers([p for p, _ in examples], answers["partial"])
        full = mc.answers([f for _, f in examples], answers["full"])
        samples = [{"sentences": [c for _, c in f.options], "gold": f.gold,
                    "scores_partial": a.scores, "choice_partial": a.choice, "correct_partial": a.correct,
                    "scores_full": b.scores, "choice_full": b.choice, "correct_full": b.correct}
                   for (_, f), a, b in zip(examples, partial, full)]
        spread = {m: binomial([s[f"correct_{m[4:]}"] for s in samples], unit="schema")
                  for m in ("acc_partial", "acc_full")}
        return Scored({"acc_partial": mc.accuracy(partial), "acc_full": mc.accuracy(full)}, samples, spread=spread,
                      pairs=[("acc_partial", "acc_full")])
