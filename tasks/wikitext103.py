"""WikiText-103 test (wiki.test.tokens: 60 articles, 4,358 lines, 245,569 tokens with <eos>).

Protocol: the whole tokenized test file, with its <unk> kept as text (the paper reports different
numbers for WikiText-2 and -103, whose test sets differ only in <unk>, so it scored the tokenized
files), de-tokenized (" @-@ " -> "-", " @,@ " -> ",", " @.@ " -> ".", no space before
punctuation, heading markers tidied) and scored as one stream in disjoint 1024-token windows;
ppl = exp(total NLL / 245,569 original tokens). Hub fallback: Salesforce/wikitext
wikitext-103-v1, rebuilt into the upstream bytes (blank rows become " \\n").
"""
from gpt2eval.protocols.detokenize import wikitext_detokenize
from gpt2eval.protocols.perplexity import PER_ARTICLE_PROTOCOL, STREAM_PROTOCOL, PerplexityTask


class WikiText103(PerplexityTask):
    name = "wikitext103"
    description = "WikiText-103 test perplexity, per original token"
    relpath = "wikitext/wikitext-103/wiki.test.tokens"
    hub = ("Salesforce/wikitext", "wikitext-103-v1", "test")
    n_lines = 4358
    protocol = {"detokenizer": "gpt2eval.protocols.detokenize.wikitext_detokenize", "unk": "kept as text", **STREAM_PROTOCOL}
    detokenize = staticmethod(wikitext_detokenize)


class WikiText103PerArticle(WikiText103):
    """WikiText-103 test, each article its own stream, as lm-evaluation-harness's wikitext and HELM
    score WikiText; the paper does not say, so `wikitext103`'s one stream stays the default. Same file,
    de-tokenizer, normalisation and paper row as `wikitext103`. Articles start at top-level headings by
    lm-eval's rule (gpt2eval.protocols.perplexity): 62 streams, as that rule also splits "Constant k
    filter" at two formula lines. An example is an article: --limit N scores the first N."""
    name = "wikitext103_per_article"
    description = "WikiText-103 test perplexity, one stream per article (lm-eval / HELM), per original token"
    paper_task = "wikitext103"
    per_article = True
    n_articles = 62
    protocol = {"detokenizer": "gpt2eval.protocols.detokenize.wikitext_detokenize", "unk": "kept as text", **PER_ARTICLE_PROTOCOL}
