"""One Billion Word benchmark (Chelba et al. 2013): perplexity per original token on its test shard.

Data: the held-out shard `news.en.heldout-00000-of-00050` (the benchmark's test set; md5
ce1e84fb6d856ced56ba2c551104f6ac per the benchmark's repository; 159,658 tokens per its README,
`</S>` included, as tensor2tensor's lm1b notes say: "dev words (including eos) 159658"). Found as
`1bw/news.en.heldout-00000-of-00050` under --data-dir or the download cache, else extracted from the
benchmark's archive (`1bw/1-billion-word-language-modeling-benchmark-r13output.tar.gz` under
--data-dir or the cache, else downloaded from statmt.org; size and SHA-256 as huggingface/datasets
pins them, datasets/lm1b/urls_checksums/checksums.txt) and md5-checked. No hub fallback.

Protocol: the sentences are shuffled, so there is no context across lines (the paper says so):
each line is its own stream, `<|endoftext|>` + the de-tokenized sentence + "\\n", every token
scored (the newline stands for the sentence's end, as each line's newline does in the one-stream LM
tasks). De-tokenizer: `gpt2eval.protocols.detokenize.one_billion_word_detokenize` (spacing only).
ppl = exp(total NLL / original tokens), original tokens = whitespace tokens + one end-of-sentence a
line (as for PTB). An example is a line; its sample row holds its NLL and original tokens.
"""
import hashlib
import math

from gpt2eval.api.data import Dataset, read_text
from gpt2eval.protocols.detokenize import count_original_tokens, one_billion_word_detokenize
from gpt2eval.protocols.download import Remote, cache_dir, extract_member, md5_checked, obtain
from gpt2eval.errors import DataError
from gpt2eval.api.requests import RollingLoglikelihood
from gpt2eval.api.task import Metric, Scored, Task
from gpt2eval.api.uncertainty import ratio, safe_exp

SHARD = "1bw/news.en.heldout-00000-of-00050"
MEMBER = ("1-billion-word-language-modeling-benchmark-r13output/heldout-monolingual.tokenized.shuffled/"
          "news.en.heldout-00000-of-00050")


class OneBillionWord(Task):
    name = "1bw"
    description = "One Billion Word benchmark, test shard, perplexity per original token"
    metrics = {"ppl": Metric("1bw/ppl", "per original token incl. one end-of-sentence a line (paper)", False),
               "token_ppl": Metric(None, "per GPT-2 token", False)}
    protocol = {"data": "news.en.heldout-00000-of-00050 (md5-checked)",
                "detokenizer": "gpt2eval.protocols.detokenize.one_billion_word_detokenize",
                "streams": "each line its own stream: <|endoftext|> + sentence + '\\n', all tokens scored",
                "normalisation": "exp(total NLL / original tokens incl. one end-of-sentence per line)"}
    shard_md5 = "ce1e84fb6d856ced56ba2c551104f6ac"
    archive = Remote("1bw/1-billion-word-language-modeling-benchmark-r13output.tar.gz",
                     "https://www.statmt.org/lm-benchmark/1-billion-word-language-modeling-benchmark-r13output.tar.gz",
                     1_792_209_805, source="huggingface/datasets datasets/lm1b/urls_checksums/checksums.txt")

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
        return {"sentence": [RollingLoglikelihood(d + "\n") for _, d in examples]}  # each line its own stream

    def score(self, examples, answers):
        results = answers["sentence"]
        orig = [count_original_tokens(o) for o, _ in examples]
        nll = [-r.logprob for r in results]
        samples = [{"line": i, "text": d[:80], "original_tokens": n, "gpt2_tokens": r.n_tokens, "nll": x}
                   for i, ((_, d), n, r, x) in enumerate(zip(examples, orig, results, nll, strict=True))]
        total, gpt2 = sum(nll), sum(r.n_tokens for r in results)
        spread = {"ppl": ratio(nll, orig, math.exp, unit="sentence"),  # intervals: sentences resampled
                  "token_ppl": ratio(nll, [r.n_tokens for r in results], math.exp, unit="sentence")}
        return Scored({"ppl": safe_exp(total / sum(orig)), "token_ppl": safe_exp(total / gpt2)}, samples,
                      extra={"original_tokens": sum(orig), "gpt2_tokens": gpt2, "total_nll": total},
                      spread=spread, pairs=[("ppl", "token_ppl")])
