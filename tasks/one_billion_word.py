"""One Billion Word benchmark (Chelba et al. 2013): perplexity per original token on its test shard.

Data: the held-out shard `news.en.heldout-00000-of-00050` (the benchmark's test set; md5
ce1e84fb6d856ced56ba2c551104f6ac per the benchmark's repository; 159,658 tokens per its README,
`</S>` included, as tensor2tensor's lm1b notes say: "dev words (including eos) 159658"). Found as
`1bw/news.en.heldout-00000-of-00050` under --data-dir or the download cache, else extracted from the
benchmark's archive (`1bw/1-billion-word-language-modeling-benchmark-r13output.tar.gz` under
--data-dir or the cache, else downloaded from statmt.org; size and SHA-256 as huggingface/datasets
pins them, datasets/lm1b/urls_checksums/checksums.txt) and md5-checked. No hub fallback.

Protocol: the sentences of the benchmark are shuffled; the paper says only that "1BW's sentence
level shuffling removes all long-range structure", which fits scoring each sentence alone (the
default) as well as the shard as one continuous stream (`streams=shard`). Each sentence is the
de-tokenized line + "\\n", every token scored (the newline stands for the sentence's end, as each
line's newline does in the one-stream LM tasks). `streams=sentence`: each sentence its own stream,
after `<|endoftext|>`; `streams=shard`: the sentences joined in file order as one stream, the first
after `<|endoftext|>`, in windows as the other LM tasks (`stride`: gpt2eval.protocols.windows; with
streams=sentence it matters only for a sentence longer than the window). De-tokenizer:
`gpt2eval.protocols.detokenize.one_billion_word_detokenize` (spacing only). ppl = exp(total NLL /
original tokens), original tokens = whitespace tokens + one end-of-sentence a line (as for PTB). An
example is a line; its sample row holds its NLL and original tokens (with streams=shard, the NLL of
the tokens that start in it).
"""
import hashlib
import math

from gpt2eval.api.data import Dataset, read_text
from gpt2eval.protocols.detokenize import count_original_tokens, one_billion_word_detokenize
from gpt2eval.protocols.download import Remote, cache_dir, extract_member, md5_checked, obtain
from gpt2eval.errors import DataError
from gpt2eval.api.requests import RollingLoglikelihood
from gpt2eval.api.task import Metric, Option, Scored, Task
from gpt2eval.api.uncertainty import ratio, safe_exp
from gpt2eval.protocols.windows import STRIDE, check_stride, windows

SHARD = "1bw/news.en.heldout-00000-of-00050"
MEMBER = ("1-billion-word-language-modeling-benchmark-r13output/heldout-monolingual.tokenized.shuffled/"
          "news.en.heldout-00000-of-00050")


class OneBillionWord(Task):
    name = "1bw"
    description = "One Billion Word benchmark, test shard, perplexity per original token"
    metrics = {"ppl": Metric("1bw/ppl", "per original token incl. one end-of-sentence a line (paper)", False),
               "token_ppl": Metric(None, "per GPT-2 token", False)}
    options = {"stride": STRIDE,
               "streams": Option("sentence", "sentence: each sentence its own stream; shard: the test shard as one "
                                             "continuous stream", choices=("sentence", "shard"))}
    shard_md5 = "ce1e84fb6d856ced56ba2c551104f6ac"
    archive = Remote("1bw/1-billion-word-language-modeling-benchmark-r13output.tar.gz",
                     "https://www.statmt.org/lm-benchmark/1-billion-word-language-modeling-benchmark-r13output.tar.gz",
                     1_792_209_805, source="huggingface/datasets datasets/lm1b/urls_checksums/checksums.txt")

    def __init__(self, **settings):
        super().__init__(**settings)
        check_stride(self.name, self.stride)

    @property
    def protocol(self):
        streams = ("the shard as one stream: <|endoftext|> + every sentence + '\\n', in file order" if self.streams ==
                   "shard" else "each line its own stream: <|endoftext|> + sentence + '\\n'")
        return {"data": "news.en.heldout-00000-of-00050 (md5-checked)",
                "detokenizer": "gpt2eval.protocols.detokenize.one_billion_word_detokenize",
                "streams": f"{streams}, all tokens scored", "windows": windows(self.stride),
                "normalisation": "exp(total NLL / original tokens incl. one end-of-sentence per line)"}

    def shard(self, data):
        for path in ([data.data_dir / SHARD] if data.data_dir else []) + [cache_dir() / "data" / SHARD]:
            if path.is_file():
                return md5_checked(path, self.shard_md5), {}
        try:
            archive, source = obtain(self.archive, data.data_dir)
        except DataError as e:
            raise DataError(f"the test shard {SHARD} is not under --data-dir nor in the cache, and {e}") from None
        return extract_member(archive, MEMBER, cache_dir() / "data" / SHARD, self.shard_md5), {"archive": source}

    def load(self, data):
        path, archive = self.shard(data)
        text = read_text(path)
        lines = text.splitlines()
        source = {"kind": "file", "path": str(path.resolve()), "md5": self.shard_md5, "verified": True,
                  "sha256": hashlib.sha256(text.encode("utf-8")).hexdigest(), **archive}
        detok = one_billion_word_detokenize("\n".join(lines)).split("\n")
        return Dataset(list(zip(lines, detok)), n_full=len(lines), source=source)

    def requests(self, examples):
        sentences = [d + "\n" for _, d in examples]
        if self.streams == "shard":
            return {"shard": RollingLoglikelihood("".join(sentences), stride=self.stride)}
        return {"sentence": [RollingLoglikelihood(x, stride=self.stride) for x in sentences]}

    def score(self, examples, answers):
        if self.streams == "shard":  # each line's NLL: that of the tokens that start in it
            nll, tokens = answers["shard"].by_piece([d + "\n" for _, d in examples])
        else:
            nll, tokens = [-r.logprob for r in answers["sentence"]], [r.n_tokens for r in answers["sentence"]]
        orig = [count_original_tokens(o) for o, _ in examples]
        samples = [{"line": i, "text": d[:80], "original_tokens": n, "gpt2_tokens": t, "nll": x}
                   for i, ((_, d), n, t, x) in enumerate(zip(examples, orig, tokens, nll, strict=True))]
        total, gpt2 = sum(nll), sum(tokens)
        spread = {"ppl": ratio(nll, orig, math.exp, unit="sentence"),  # intervals: sentences resampled
                  "token_ppl": ratio(nll, tokens, math.exp, unit="sentence")}
        return Scored({"ppl": safe_exp(total / sum(orig)), "token_ppl": safe_exp(total / gpt2)}, samples,
                      extra={"original_tokens": sum(orig), "gpt2_tokens": gpt2, "total_nll": total},
                      spread=spread, pairs=[("ppl", "token_ppl")])
