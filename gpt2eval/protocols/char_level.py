"""The character-level LM tasks (enwik8: bits per byte; text8: bits per character).

Both test sets are the last 5,000,000 bytes (enwik8) or characters (text8) of a 100,000,000-unit
file in one of Matt Mahoney's zip archives (the standard 90M/5M/5M split: `data[-5000000:]` in
salesforce/awd-lstm-lm's data/enwik8/prep_enwik8.py, which public getdata.sh scripts fetch, and in
gluon-nlp's scripts/datasets/language_modeling/prepare_lm.py for both files). The split is scored
as ONE stream, like the other LM tasks: `RollingLoglikelihood`, disjoint 1,024-token windows (the
`stride` option: overlapping ones, gpt2eval.protocols.windows), the first token after
<|endoftext|>. The total NLL in bits is divided by the number of original units (the paper divides
"by the number of canonical units"). The archive comes from `gpt2eval.protocols.download`
(--data-dir, cache, or download, checksum-verified).

An example is a piece of the split (a line of enwik8, a block of text8): each piece's NLL is the
sum over the GPT-2 tokens that START in it, so sample rows hold each piece's NLL and units and the
metric is sum(nll) / ln 2 / sum(units) over them; --limit N scores the first N pieces as a stream.
The task asks for {"stream": RollingLoglikelihood(the pieces joined)} and scores its one answer.
"""
from __future__ import annotations

import hashlib
import math
import zipfile

from ..api.data import Dataset
from .download import Remote, obtain
from ..errors import DataError
from ..api.requests import RollingLoglikelihood
from ..api.task import Metric, Scored, Task
from ..api.uncertainty import ratio, safe_exp
from .windows import STRIDE, check_stride, windows

TEST_UNITS = 5_000_000


def read_member(path, member: str) -> bytes:
    try:
        with zipfile.ZipFile(path) as z:
            return z.read(member)
    except KeyError:
        raise DataError(f"{path}: the archive has no member {member!r}; re-download the upstream file") from None
    except (zipfile.BadZipFile, OSError) as e:
        raise DataError(f"{path}: not a readable zip archive ({e}); delete it and download it again") from None


class CharLevelTask(Task):
    remote: Remote
    member = ""                 # the file inside the zip
    metric = ""                 # "bits_per_byte" or "bits_per_char"
    base_protocol: dict[str, str] = {}  # the plugin's entries; "windows" comes from the stride option
    options = {"stride": STRIDE}

    def __init__(self, **settings):
        super().__init__(**settings)
        check_stride(self.name, self.stride)

    @property
    def protocol(self) -> dict[str, str]:
        entries = dict(self.base_protocol)
        normalisation = entries.pop("normalisation")
        entries["windows"] = f"one stream, {windows(self.stride)}, first token after <|endoftext|>"
        return {**entries, "normalisation": normalisation}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        if cls.name:
            cls.metrics = {cls.metric: Metric(f"{cls.name}/{cls.metric}", "total NLL in bits / original units "
                                              "of the last 5M (paper)", False),
                           "token_ppl": Metric(None, "per GPT-2 token", False)}

    def pieces(self, split: bytes) -> list[tuple[str, int]]:
        """(text, original units) per example, in order."""
        raise NotImplementedError

    def load(self, data):
        path, source = obtain(self.remote, data.data_dir)
        raw = read_member(path, self.member)
        if len(raw) <= TEST_UNITS:
            raise DataError(f"{path}: member {self.member} has {len(raw):,} bytes, fewer than the "
                            f"{TEST_UNITS:,} of the test split; re-download the upstream file")
        split = raw[-TEST_UNITS:]
        try:
            pieces = self.pieces(split)
        except DataError as e:
            raise DataError(f"{path}, member {self.member}: {e}") from None
        source.update(member=self.member, member_bytes=len(raw), split=f"last {TEST_UNITS:,} bytes",
                      split_sha256=hashlib.sha256(split).hexdigest())
        return Dataset(pieces, n_full=len(pieces), source=source)

    def requests(self, examples):
        return {"stream": RollingLoglikelihood("".join(text for text, _ in examples), stride=self.stride)}

    def score(self, examples, answers):
        result = answers["stream"]
        nll, tokens = result.by_piece([text for text, _ in examples])
        units = sum(n for _, n in examples)
        total = -result.logprob
        samples = [{"piece": i, "text": text[:80], "units": n, "gpt2_tokens": t, "nll": x}
                   for i, ((text, n), t, x) in enumerate(zip(examples, tokens, nll))]
        unit = self.protocol.get("examples", "piece of the split")  # intervals: these pieces resampled
        spread = {self.metric: ratio([x / math.log(2) for x in nll], [n for _, n in examples], unit=unit),
                  "token_ppl": ratio(nll, tokens, math.exp, unit=unit)}
        return Scored({self.metric: total / math.log(2) / units, "token_ppl": safe_exp(total / result.n_tokens)},
                      samples, extra={"units": units, "gpt2_tokens": result.n_tokens, "total_nll": total,
                                      "tokens_per_unit": result.n_tokens / units}, spread=spread)
