"""WikiText-2 test (wiki.test.tokens: the same 60 articles as WikiText-103, but WikiText-2's
smaller vocabulary gives 15,218 <unk> instead of 2,492; 245,569 tokens with <eos>).

Protocol: as wikitext103 (de-tokenized, <unk> kept, one stream, disjoint 1024-token windows,
per original token), with the same options: `stride`, `detokenize=paper|none|megatron`,
`streams=file|article`. Hub fallback: Salesforce/wikitext wikitext-2-v1.
"""
from gpt2eval.protocols.detokenize import wikitext_detokenize
from gpt2eval.protocols.detokenize_megatron import wikitext_detokenize_megatron
from gpt2eval.protocols.perplexity import DETOKENIZE, STREAMS, PerplexityTask
from gpt2eval.protocols.windows import STRIDE


class WikiText2(PerplexityTask):
    name = "wikitext2"
    description = "WikiText-2 test perplexity, per original token"
    relpath = "wikitext/wikitext-2/wiki.test.tokens"
    hub = ("Salesforce/wikitext", "wikitext-2-v1", "test")
    n_lines, n_articles = 4358, 62
    options = {"stride": STRIDE, "detokenize": DETOKENIZE, "streams": STREAMS}
    detokenizers = {"paper": wikitext_detokenize, "none": None, "megatron": wikitext_detokenize_megatron}
    base_protocol = {"unk": "kept as text"}
