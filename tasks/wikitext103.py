"""WikiText-103 test (wiki.test.tokens: 60 articles, 4,358 lines, 245,569 tokens with <eos>).

Protocol: the whole tokenized test file, with its <unk> kept as text (the paper reports different
numbers for WikiText-2 and -103, whose test sets differ only in <unk>, so it scored the tokenized
files), de-tokenized (" @-@ " -> "-", " @,@ " -> ",", " @.@ " -> ".", no space before
punctuation, heading markers tidied) and scored as one stream in disjoint 1024-token windows;
ppl = exp(total NLL / 245,569 original tokens). Hub fallback: Salesforce/wikitext
wikitext-103-v1, rebuilt into the upstream bytes (blank rows become " \\n").
Options (gpt2eval.protocols.perplexity): `stride`, `detokenize=paper|none|megatron`,
`streams=file|article` (each article its own stream, as lm-evaluation-harness and HELM: 62 streams).
"""
from gpt2eval.protocols.detokenize import wikitext_detokenize
from gpt2eval.protocols.detokenize_megatron import wikitext_detokenize_megatron
from gpt2eval.protocols.perplexity import DETOKENIZE, STREAMS, PerplexityTask
from gpt2eval.protocols.windows import STRIDE


class WikiText103(PerplexityTask):
    name = "wikitext103"
    description = "WikiText-103 test perplexity, per original token"
    relpath = "wikitext/wikitext-103/wiki.test.tokens"
    hub = ("Salesforce/wikitext", "wikitext-103-v1", "test")
    n_lines, n_articles = 4358, 62
    options = {"stride": STRIDE, "detokenize": DETOKENIZE, "streams": STREAMS}
    detokenizers = {"paper": wikitext_detokenize, "none": None, "megatron": wikitext_detokenize_megatron}
    base_protocol = {"unk": "kept as text"}
