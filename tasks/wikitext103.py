"""WikiText-103 test (wiki.test.tokens: 60 articles, 4,358 lines, 245,569 tokens with <eos>).

Protocol: the whole tokenized test file, with its <unk> kept as text (the paper reports different
numbers for WikiText-2 and -103, whose test sets differ only in <unk>, so it scored the tokenized
files), de-tokenized (" @-@ " -> "-", " @,@ " -> ",", " @.@ " -> ".", no space before
punctuation, heading markers tidied) and scored as one stream in disjoint 1024-token windows;
ppl = exp(total NLL / 245,569 original tokens). Hub fallback: Salesforce/wikitext
wikitext-103-v1, rebuilt into the upstream bytes (blank rows become " \\n").
"""
from gpt2eval.detokenize import wikitext_detokenize
from gpt2eval.perplexity import STREAM_PROTOCOL, PerplexityTask


class WikiText103(PerplexityTask):
    name = "wikitext103"
    description = "WikiText-103 test perplexity, per original token"
    relpath = "wikitext/wikitext-103/wiki.test.tokens"
    hub = ("Salesforce/wikitext", "wikitext-103-v1", "test")
    n_lines = 4358
    protocol = {"detokenizer": "gpt2eval.detokenize.wikitext_detokenize", "unk": "kept as text", **STREAM_PROTOCOL}
    detokenize = staticmethod(wikitext_detokenize)
