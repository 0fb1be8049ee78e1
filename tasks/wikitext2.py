"""WikiText-2 test (wiki.test.tokens: the same 60 articles as WikiText-103, but WikiText-2's
smaller vocabulary gives 15,218 <unk> instead of 2,492; 245,569 tokens with <eos>).

Protocol: as wikitext103 (de-tokenized, <unk> kept, one stream, disjoint 1024-token windows,
per original token). Hub fallback: Salesforce/wikitext wikitext-2-v1.
"""
from gpt2eval.protocols.detokenize import wikitext_detokenize
from gpt2eval.protocols.perplexity import PER_ARTICLE_PROTOCOL, STREAM_PROTOCOL, PerplexityTask


class WikiText2(PerplexityTask):
    name = "wikitext2"
    description = "WikiText-2 test perplexity, per original token"
    relpath = "wikitext/wikitext-2/wiki.test.tokens"
    hub = ("Salesforce/wikitext", "wikitext-2-v1", "test")
    n_lines = 4358
    protocol = {"detokenizer": "gpt2eval.protocols.detokenize.wikitext_detokenize", "unk": "kept as text", **STREAM_PROTOCOL}
    detokenize = staticmethod(wikitext_detokenize)


class WikiText2PerArticle(WikiText2):
    """WikiText-2 test, each article its own stream, as lm-evaluation-harness's wikitext and HELM
    score WikiText; the paper does not say, so `wikitext2`'s one stream stays the default. Same file,
    de-tokenizer, normalisation and paper row as `wikitext2`. Articles start at top-level headings by
    lm-eval's rule (gpt2eval.protocols.perplexity): 62 streams, as that rule also splits "Constant k
    filter" at two formula lines. An example is an article: --limit N scores the first N."""
    name = "wikitext2_per_article"
    description = "WikiText-2 test perplexity, one stream per article (lm-eval / HELM), per original token"
    paper_task = "wikitext2"
    per_article = True
    n_articles = 62
    protocol = {"detokenizer": "gpt2eval.protocols.detokenize.wikitext_detokenize", "unk": "kept as text", **PER_ARTICLE_PROTOCOL}
