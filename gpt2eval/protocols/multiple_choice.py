"""Multiple choice by log-likelihood, shared by the cloze-style tasks (CBT, Winograd).

A question is a list of options, each a (context, continuation) pair, and the index of the right
one. Usually the options share one context and differ in the continuation (CBT: the 20 sentences
and the query's beginning, then each candidate with the rest of the query); Winograd's partial
scoring is the other way round (a different beginning per candidate, one shared ending). Each option
becomes one plain `Loglikelihood` request; options that share a context use the very same string,
so the engine can forward a shared prefix once (it detects it from the token prefixes).

In a task: `requests` gives one list of option requests per question, which the task puts under a
name (`{"options": mc.requests(questions)}`); its `score` gets one list of results per question
under that name and passes them to `answers`, which zips them with the questions.

An option's score is the log-probability of its continuation, under one of these rules:
  "sum"   the summed log-probability of the continuation's tokens (its joint probability: the rule
          of the GPT-2 paper for CBT and of Trinh & Le 2018 for Winograd);
  "mean"  that sum divided by the continuation's number of GPT-2 tokens (a length-normalised
          variant; it is not what either paper describes).
The highest score wins; a tie goes to the lowest index (a rule, so the choice is deterministic).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..api.requests import Loglikelihood, LoglikelihoodResult

SCORINGS = ("sum", "mean")


@dataclass(frozen=True)
class Question:
    options: tuple[tuple[str, str], ...]   # (context, continuation) per candidate
    gold: int

    def __post_init__(self):
        if len(self.options) < 2 or not 0 <= self.gold < len(self.options):
            raise ValueError(f"a question needs >= 2 options and a gold index among them, got "
                             f"{len(self.options)} options and gold {self.gold}")

    @classmethod
    def shared_context(cls, context: str, continuations, gold: int) -> "Question":
        return cls(tuple((context, c) for c in continuations), gold)

    @classmethod
    def shared_continuation(cls, contexts, continuation: str, gold: int) -> "Question":
        return cls(tuple((c, continuation) for c in contexts), gold)


@dataclass
class Answer:
    """The verdict on one question under one scoring rule."""
    scores: list[float]
    choice: int
    correct: bool


def requests(questions: list[Question]) -> list[list[Loglikelihood]]:
    """Per question, one request per option."""
    return [[Loglikelihood(ctx, cont) for ctx, cont in q.options] for q in questions]


def option_score(result: LoglikelihoodResult, scoring: str) -> float:
    if scoring == "sum":
        return result.logprob
    if scoring == "mean":
        return result.logprob / len(result.token_logprobs)
    raise ValueError(f"unknown scoring {scoring!r}; one of {', '.join(SCORINGS)}")


def answers(questions: list[Question], per_question: list[list[LoglikelihoodResult]],
            scoring: str = "sum") -> list[Answer]:
    """Each question's verdict; `per_question` are the answers to `requests(questions)`."""
    out = []
    for q, results in zip(questions, per_question, strict=True):
        if len(results) != len(q.options):
            raise ValueError(f"{len(results)} results for a question of {len(q.options)} options")
        scores = [option_score(r, scoring) for r in results]
        choice = max(range(len(scores)), key=lambda k: (scores[k], -k))  # first of the best
        out.append(Answer(scores, choice, choice == q.gold))
    return out


def accuracy(verdicts: list[Answer]) -> float:
    """Percent correct: the mean of the per-question 0/1 values (which sample rows keep)."""
    return 100 * sum(a.correct for a in verdicts) / len(verdicts)
