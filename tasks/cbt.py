"""Children's Book Test (Hill et al. 2015), common nouns (cbt_cn) and named entities (cbt_ne).

Data: the validation sets, 2,000 questions each (the paper reports validation because a test-set
book, The Jungle Book, is in WebText). `cbt/cbtest_{CN,NE}_valid_2000ex.txt` (the original files,
checked against their git blob ids), else the one-question files of the shared data folder
(`...valid_2000ex.SUBSET_1ex.txt`: a SUBSET, labelled so), else the hub's cam-cst/cbt
(`CN`/`NE`, validation). A question is 20 numbered context sentences, then sentence 21 with
`XXXXX` for the missing word, its answer and 10 candidates.

Prompt (paper, section 3.2: "the probability of each choice and the rest of the sentence
conditioned on this choice"): the sentence numbers are stripped; the 21 sentences are de-tokenized
(`gpt2eval.protocols.detokenize.cbt_detokenize`, CoreNLP's escapes undone, the quote state carried from
sentence to sentence) and joined by single spaces (none after a sentence that ends in the opening
quote of the next: `join_sentences`). The text up to `XXXXX` is the context; each candidate in its
place, with the rest of the query, is a continuation. The space before the candidate belongs to
the continuation (GPT-2's BPE merges it into the word); there is none after an opening quote or
bracket. A context longer than the window loses its beginning (the engine keeps the last 1,024
tokens; counted in `extra`).

Metric: `acc`, percent of questions whose gold candidate has the highest summed log-probability
(compared with Table 3's CBT row); `acc_token_mean` ranks by log-probability per GPT-2 token
instead (a named variant; the paper's rule is the probability, i.e. the sum).
"""
import hashlib

from gpt2eval.protocols import multiple_choice as mc
from gpt2eval.api.data import Dataset, read_text
from gpt2eval.protocols.detokenize import cbt_detokenize
from gpt2eval.errors import DataError
from gpt2eval.api.task import Metric, Scored, Task
from gpt2eval.api.uncertainty import binomial

BLANK = "XXXXX"
GIT_BLOBS = {"CN": "dbe54c05644234ca1fe988238a535c13eb440d91", "NE": "7f702d10bfb15937da7c6423f8ce0a1231447f17"}


def parse_questions(text: str, path) -> list[dict]:
    """The original format: lines `N sentence` (N = 1..20), then `21 query\\tanswer\\t\\tc1|...|c10`."""
    questions, sentences = [], []
    for n, line in enumerate(text.split("\n"), 1):
        if not line.strip():
            continue
        num, _, rest = line.partition(" ")
        if num != str(len(sentences) + 1):
            raise DataError(f"{path}, line {n}: expected sentence number {len(sentences) + 1}, got {num!r}")
        if num != "21":
            sentences.append(rest.strip())
            continue
        fields = rest.split("\t")
        options = fields[-1].strip().split("|")
        if len(fields) < 3 or fields[0].count(BLANK) != 1 or fields[1].strip() not in options or len(options) < 2:
            raise DataError(f"{path}, line {n}: a query needs one {BLANK}, a tab, its answer and the "
                            "|-separated candidates that include it")
        questions.append({"sentences": sentences, "question": fields[0].strip(),
                          "answer": fields[1].strip(), "options": options})
        sentences = []
    if sentences:
        raise DataError(f"{path}: the file ends after sentence {len(sentences)} of a question; re-download it")
    return questions


def join_sentences(lines: list[str]) -> str:
    """One space between sentences; none after a sentence that ends in an opening quote (" '")."""
    return "".join(("" if i == 0 or lines[i - 1].endswith(" '") else " ") + line
                   for i, line in enumerate(lines))


def to_question(row: dict) -> mc.Question:
    """The shared context and the 10 continuations of one question (see the module docstring)."""
    def text_with(word):
        return join_sentences(cbt_detokenize("\n".join(row["sentences"] + [row["question"].replace(BLANK, word)]))
                              .split("\n"))
    before = text_with(BLANK).split(BLANK)[0]   # a candidate changes nothing before itself
    lead = " " if before.endswith(" ") else ""  # none after an opening quote or bracket
    continuations = [lead + text_with(c)[len(before):] for c in row["options"]]
    return mc.Question.shared_context(before.rstrip(" "), continuations, row["options"].index(row["answer"]))


class CBT(Task):
    word_type = ""
    protocol = {"split": "validation (the paper's; a test-set book is in WebText)",
                "detokenizer": "gpt2eval.protocols.detokenize.cbt_detokenize, sentence numbers stripped",
                "context": "the 21 sentences joined by ' ' (none after an opening quote), up to XXXXX",
                "continuation": "' ' + candidate + rest of the query (no space after an opening quote)",
                "scoring": "highest summed log-probability of the continuation; ties to the first candidate",
                "long_context": "cut on the left to the model's window"}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.word_type:
            cls.name = f"cbt_{cls.word_type.lower()}"
            cls.description = f"Children's Book Test ({cls.word_type}), validation, 10-way cloze"
            cls.metrics = {"acc": Metric(f"{cls.name}/acc", "summed log-probability of candidate + rest (paper)"),
                           "acc_token_mean": Metric(None, "log-probability per GPT-2 token")}

    def load(self, data):
        full = f"cbt/cbtest_{self.word_type}_valid_2000ex.txt"
        path = data.find(full) or data.find(f"cbt/cbtest_{self.word_type}_valid_2000ex.SUBSET_1ex.txt")
        if path is None:
            rows = data.hub("cam-cst/cbt", self.word_type, "validation")
            for n, r in enumerate(rows):
                if r["question"].count(BLANK) != 1 or r["answer"] not in r["options"]:
                    raise DataError(f"cam-cst/cbt {self.word_type} validation, row {n}: needs one {BLANK} "
                                    "and an answer among the options")
            return Dataset([to_question(r) for r in rows], n_full=2000,
                           source=data.hub_source("cam-cst/cbt", self.word_type, "validation", rows))
        text = read_text(path)
        source = data.file_source(path, str(path.relative_to(data.data_dir)))
        if path.name == full.split("/")[1]:
            raw = path.read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(raw) + raw).hexdigest()
            if blob != GIT_BLOBS[self.word_type]:
                raise DataError(f"{path}: git blob id is {blob} but the original file's is "
                                f"{GIT_BLOBS[self.word_type]}; restore the original")
            source.update(git_blob=blob, verified=True)
        return Dataset([to_question(r) for r in parse_questions(text, path)], n_full=2000, source=source)

    def requests(self, examples):
        return {"options": mc.requests(examples)}

    def score(self, examples, answers):
        per_q = answers["options"]  # per question, one result per candidate
        by_sum, by_mean = mc.answers(examples, per_q, "sum"), mc.answers(examples, per_q, "mean")
        samples = [{"context_tail": q.options[0][0][-80:], "candidates": [c for _, c in q.options], "gold": q.gold,
                    "choice": s.choice, "correct": s.correct, "scores": s.scores,
                    "choice_token_mean": m.choice, "correct_token_mean": m.correct,
                    "context_truncated": any(r.truncated for r in rs)}
                   for q, s, m, rs in zip(examples, by_sum, by_mean, per_q)]
        spread = {"acc": binomial([s["correct"] for s in samples], unit="question"),
                  "acc_token_mean": binomial([s["correct_token_mean"] for s in samples], unit="question")}
        return Scored({"acc": mc.accuracy(by_sum), "acc_token_mean": mc.accuracy(by_mean)}, samples,
                      extra={"contexts_truncated": sum(s["context_truncated"] for s in samples)},
                      spread=spread, pairs=[("acc", "acc_token_mean")])


class CBTCommonNouns(CBT):
    word_type = "CN"


class CBTNamedEntities(CBT):
    word_type = "NE"
