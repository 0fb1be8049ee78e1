"""Sentence completion: of three endings, which does the model find the most likely? Eight
everyday sentences, kept in this file; scored with gpt2eval's multiple-choice helper."""
from gpt2eval.api.data import Dataset
from gpt2eval.api.task import Metric, Scored, Task
from gpt2eval.api.uncertainty import binomial
from gpt2eval.protocols import multiple_choice as mc

SENTENCES = [  # (beginning, endings, index of the right ending)
    ("The sun rises in the", [" east.", " kitchen.", " past."], 0),
    ("Water freezes when it gets very", [" loud.", " cold.", " late."], 1),
    ("She unlocked the door with her", [" sandwich.", " opinion.", " key."], 2),
    ("There are seven days in a", [" week.", " tree.", " spoon."], 0),
    ("He was thirsty, so he drank a glass of", [" gravel.", " water.", " music."], 1),
    ("Paris is the capital of", [" the moon.", " a sandwich.", " France."], 2),
    ("Birds build their nests in", [" trees.", " envelopes.", " soup."], 0),
    ("It was dark, so she turned on the", [" rain.", " light.", " bread."], 1),
]


class SentenceCompletion(Task):
    name = "sentence_completion"
    description = "Eight sentences, three endings each: is the right ending the most likely one?"
    metrics = {"acc": Metric(None, "percent of sentences whose right ending has the highest log-probability")}
    protocol = {"prompt": "the sentence's beginning; each ending, with its leading space, is a continuation",
                "scoring": "summed log-probability of the ending; a tie goes to the first ending"}

    def load(self, data):
        questions = [mc.Question.shared_context(start, endings, gold) for start, endings, gold in SENTENCES]
        return Dataset(questions, n_full=len(questions), source={"kind": "inline", "file": __file__})

    def requests(self, examples):
        return {"endings": mc.requests(examples)}  # per sentence, one Loglikelihood per ending

    def score(self, examples, answers):
        verdicts = mc.answers(examples, answers["endings"])  # per sentence, one result per ending
        samples = [{"beginning": q.options[0][0], "chosen": q.options[v.choice][1], "correct": v.correct,
                    "scores": v.scores} for q, v in zip(examples, verdicts, strict=True)]
        return Scored({"acc": mc.accuracy(verdicts)}, samples,
                      spread={"acc": binomial([v.correct for v in verdicts], unit="sentence")})
