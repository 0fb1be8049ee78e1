"""The public de-tokenizer (`detokenize=megatron`), reimplemented from its published rules: equal to
lm-evaluation-harness's own `wikitext_detokenizer` (imported from the installed lm_eval) on the
WikiText test files, whole and line for line, and to Megatron-LM's PTB rules as its source writes
them (lm-eval has no PTB de-tokenizer); where it differs from ours, and why the tasks apply it line
by line."""
import random

import pytest
from lm_eval.tasks.wikitext.preprocess_wikitext import wikitext_detokenizer

from conftest import DATA
from gpt2eval.protocols.detokenize import ptb_detokenize, ptb_detokenize_n_digit, wikitext_detokenize
from gpt2eval.protocols.detokenize_megatron import (PTB_STEPS, WIKITEXT_STEPS, apply_steps, ptb_detokenize_megatron,
                                                    tighten_pairs, wikitext_detokenize_megatron)
from gpt2eval.protocols.perplexity import split_articles

WIKITEXT = ["wikitext-103/wiki.test.tokens", "wikitext-2/wiki.test.tokens", "wikitext-2-raw/wiki.test.raw"]


def lm_eval(text: str) -> str:
    return wikitext_detokenizer({"page": text})


def lm_eval_line(line: str) -> str:
    """lm-eval's function on one line as it sits in a file, between two newlines."""
    out = lm_eval("\n" + line + "\n")
    assert out[0] == out[-1] == "\n"
    return out[1:-1]


def megatron_ptb_source(string: str) -> str:
    """Megatron-LM's ptb_detokenizer as its source writes it (tasks/zeroshot_gpt/detokenizer.py),
    the test's reference: lm-evaluation-harness has no PTB de-tokenizer (its paloma_ptb task scores
    the text as it is)."""
    string = string.replace(" '", "'")
    string = string.replace(" \n", "\n")
    string = string.replace("\n ", "\n")
    string = string.replace(" n't", "n't")
    string = string.replace(" N ", "1 ")
    string = string.replace("$ 1", "$1")
    string = string.replace("# 1", "#1")
    return string


@pytest.mark.parametrize("relpath", WIKITEXT)
def test_wikitext_rules_equal_lm_evals_function_line_for_line(relpath):
    text = (DATA / "wikitext" / relpath).read_text(encoding="utf-8")
    lines = text.split("\n")
    ours = wikitext_detokenize_megatron(text).split("\n")
    assert len(ours) == len(lines) == 4359   # 4,358 lines and the empty piece after the last newline
    differ = [(i, a, b) for i, (a, b) in enumerate(zip(ours, map(lm_eval_line, lines))) if a != b]
    assert not differ, f"{len(differ)} lines differ from lm-eval's, the first: {differ[0]}"
    # the rule set itself, on the whole file and on each article as lm-eval's wikitext feeds it
    assert apply_steps(WIKITEXT_STEPS, text) == lm_eval(text)
    for article in split_articles([(line + "\n", "") for line in lines[:-1]]):
        page = "".join(o for o, _ in article)
        assert apply_steps(WIKITEXT_STEPS, page) == lm_eval(page)


def test_on_the_whole_file_the_rules_join_lines():
    """Why the tasks apply the rules line by line: on the whole file, quote and bracket pairs reach
    across lines and take the newlines inside them."""
    text = (DATA / "wikitext/wikitext-103/wiki.test.tokens").read_text(encoding="utf-8")
    assert text.count("\n") == 4358 and lm_eval(text).count("\n") == 4332
    assert wikitext_detokenize_megatron(text).count("\n") == 4358


def test_wikitext_rules_equal_lm_evals_on_random_text():
    rng = random.Random(0)
    alphabet = list("ab s'\"()[]{}=N@-,.:;!?\n\t/09$#") + ["\u00b0", "\u00a0", " @-@ ", " @,@ ", "= = ", " 's", "/' 7/"]
    for _ in range(5000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        assert apply_steps(WIKITEXT_STEPS, text) == lm_eval(text), repr(text)


def test_pairs_close_at_the_first_closing_mark_and_an_unclosed_mark_stays():
    assert tighten_pairs("( a ( b ) c )", "(", ")") == "(a ( b) c )"
    assert tighten_pairs("x ( y", "(", ")") == "x ( y"
    assert tighten_pairs("' a ' b ' c", "'", "'") == "'a' b ' c"
    assert tighten_pairs('"  "', '"', '"') == '""'


def test_ours_differs_from_lm_evals_on_571_of_2891_wikitext103_lines():
    text = (DATA / "wikitext/wikitext-103/wiki.test.tokens").read_text(encoding="utf-8")
    lines = text.split("\n")
    ours, theirs = wikitext_detokenize(text).split("\n"), wikitext_detokenize_megatron(text).split("\n")
    non_empty = [i for i, line in enumerate(lines) if line.strip()]
    assert len(non_empty) == 2891
    assert all(ours[i] == theirs[i] == "" for i in range(len(lines)) if i not in set(non_empty))
    differ = [i for i in non_empty if ours[i] != theirs[i]]
    assert len(differ) == 571
    for mine, public in (("2000–2005", "2000 – 2005"), ("Chang'an", "Chang 'an"), ("brother...", "brother ...")):
        assert any(mine in ours[i] and public in theirs[i] for i in differ)


@pytest.mark.parametrize("relpath", ["ptb/ptb.test.txt", "ptb/ptb.valid.txt"])
def test_ptb_rules_equal_megatrons_source_line_for_line(relpath):
    text = (DATA / relpath).read_text(encoding="utf-8")
    lines = text.split("\n")
    assert apply_steps(PTB_STEPS, text) == megatron_ptb_source(text)
    ours = ptb_detokenize_megatron(text).split("\n")
    assert len(ours) == len(lines)
    assert ours == [megatron_ptb_source("\n" + line + "\n")[1:-1] for line in lines]


def test_ptb_megatron_writes_n_as_1_where_its_rule_applies():
    # " N " -> "1 " takes the space before ("rose N N" -> "rose1 N"); an N at a line's edge has lost a
    # space to the edge rules first and stays, "$ N" too
    assert ptb_detokenize_megatron(" sales rose N N to $ N \n N years ago \n") == "sales rose1 N to $ N\nN years ago\n"
    text = (DATA / "ptb/ptb.test.txt").read_text(encoding="utf-8")
    megatron, paper = ptb_detokenize_megatron(text).split("\n"), ptb_detokenize(text).split("\n")
    assert sum(line.count("N") for line in paper) == 2523 and sum(line.count("N") for line in megatron) == 673
    assert sum(a != b for a, b in zip(megatron, paper)) == 1068                   # of 3,761 lines
    digits = ptb_detokenize_n_digit(text).split("\n")                             # ptb:digits=1, every N as 1
    assert sum(a != b for a, b in zip(megatron, digits)) == 889
