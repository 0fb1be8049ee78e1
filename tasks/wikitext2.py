"""WikiText-2 test (wiki.test.tokens: the same 60 articles as WikiText-103, but WikiText-2's
smaller vocabulary gives 15,218 <unk> instead of 2,492; 245,569 tokens with <eos>).

Protocol: as wikitext103 (de-tokenized, <unk> kept, one stream, disjoint 1024-token windows,
per original token). Hub fallback: Salesforce/wikitext wikitext-2-v1.
"""
from gpt2eval.detokenize import wikitext_detokenize
from gpt2eval.perplexity import STREAM_PROTOCOL, PerplexityTask


class WikiText2(PerplexityTask):
    name = "wikitext2"
    description = "WikiText-2 test perplexity, per original token"
    relpath = "wikitext/wikitext-2/wiki.test.tokens"
    hub = ("Salesforce/wikitext", "wikitext-2-v1", "test")
    n_lines = 4358
    protocol = {"detokenizer": "gpt2eval.detokenize.wikitext_detokenize", "unk": "kept as text", **STREAM_PROTOCOL}
    detokenize = staticmethod(wikitext_detokenize)
