"""Tests for the PTB/WikiText de-tokenizers, the original-token counts and the stop-word list.

The examples are short fragments of the real test files (input as it appears in the
file, output as the de-tokenizer should give it). The whole-file tests run on the
read-only shared data and are skipped where that folder is absent.
"""

import re
from pathlib import Path

import pytest

from gpt2eval.protocols.detokenize import count_original_tokens, ptb_detokenize, wikitext_detokenize
from gpt2eval.protocols.stopwords import ENGLISH_STOPWORDS

DATA_DIR = Path(__file__).resolve().parents[1].parent / "shared" / "data"

WIKITEXT_FILES = [
    "wikitext/wikitext-103/wiki.test.tokens",
    "wikitext/wikitext-2/wiki.test.tokens",
    "wikitext/wikitext-2-raw/wiki.test.raw",
]
PTB_TEST = "ptb/ptb.test.txt"


def read_data(rel: str) -> str:
    path = DATA_DIR / rel
    if not path.exists():
        pytest.skip(f"shared data file not available: {path}")
    return path.read_text(encoding="utf-8")


# --- count_original_tokens -------------------------------------------------


@pytest.mark.parametrize("rel", WIKITEXT_FILES)
def test_wikitext_test_files_have_the_published_token_count(rel):
    text = read_data(rel)
    assert text.count("\n") == 4358
    assert count_original_tokens(text) == 245_569


def test_ptb_test_file_has_the_published_token_count():
    text = read_data(PTB_TEST)
    assert text.count("\n") == 3761
    assert count_original_tokens(text) == 82_430


def test_blank_lines_still_count_one_eos():
    # Two words + <eos>, a blank " " line (just <eos>), one word + <eos>.
    assert count_original_tokens(" a b \n \n c \n") == 6
    # Without a final newline the last line is still a line.
    assert count_original_tokens(" a b \n c") == 5
    assert count_original_tokens("") == 0


# --- WikiText: examples ------------------------------------------------------


@pytest.mark.parametrize(
    "tokenized, natural",
    [
        # Headings keep their level as MediaWiki-style "=" runs.
        (" = Robert Boulter = ", "= Robert Boulter ="),
        (" = = Career = = ", "== Career =="),
        (" = = = 2000 – 2005 = = = ", "=== 2000–2005 ==="),
        (" = = = = Battle of Cape Engaño = = = = ", "==== Battle of Cape Engaño ===="),
        # A table legend with no closing run is not a heading.
        (" = National record ", "= National record"),
        # Blank separator lines become empty lines.
        (" ", ""),
        # Number/hyphen markers, punctuation, clitics, paired double quotes, <unk> kept.
        (
            ' He had a guest @-@ starring role as " Craig " in the episode " Teddy \'s Story " . ',
            'He had a guest-starring role as "Craig" in the episode "Teddy\'s Story".',
        ),
        (" the <unk> Chocolate Factory in London . ", "the <unk> Chocolate Factory in London."),
        (" a length of 12 @.@ 1 metres and 1 @,@ 500 men ; ", "a length of 12.1 metres and 1,500 men;"),
        # Brackets, currency, percent, time, km/h.
        (" ( 1 @.@ 5 % ) caused $ 3 million ", "(1.5%) caused $3 million"),
        (" a duration of 3 : 04 at 161 km / h ", "a duration of 3:04 at 161 km/h"),
        # Contractions and elisions split at the apostrophe.
        (" I wouldn 't say Chang 'an or d 'affaires ", "I wouldn't say Chang'an or d'affaires"),
        # Curly apostrophe and curly quotes.
        (" “ President Evil ” , I don ’ t , the Coaches ’ Award ", "“President Evil”, I don’t, the Coaches’ Award"),
        # Plural possessive vs. single-quoted phrase.
        (" the ships ' endurance ", "the ships' endurance"),
        (" as ' floating weapons @-@ platform ' could ", "as 'floating weapons-platform' could"),
        # WikiText keeps the space of "1. hrvatski" as a double space after @.@.
        (" ( 1 @.@  hrvatski gardijski zdrug ) ", "(1. hrvatski gardijski zdrug)"),
        # An unmatched quote at the end of a line attaches to the text before it.
        (' ten years \' worth of incense . It is said that Nero " ', "ten years' worth of incense. It is said that Nero\""),
    ],
)
def test_wikitext_examples(tokenized, natural):
    assert wikitext_detokenize(tokenized) == natural


def test_wikitext_keeps_line_structure():
    text = " = Du Fu = \n \n Du Fu was a poet . \n \n"
    assert wikitext_detokenize(text) == "= Du Fu =\n\nDu Fu was a poet.\n\n"


# --- PTB: examples -------------------------------------------------------------


@pytest.mark.parametrize(
    "tokenized, natural",
    [
        (" no it was n't black monday ", "no it wasn't black monday"),
        (" the nation 's biggest ", "the nation's biggest"),
        (" you 're i 'm we 've they 'll he 'd ", "you're i'm we've they'll he'd"),
        (" analysts ' estimates ", "analysts' estimates"),
        (" a proposed $ N billion and c$ N and # N ", "a proposed $N billion and c$N and #N"),
        # "N N" is the PTB spelling of "N %" and is left as is; so are N and <unk>.
        (" fell N N on the <unk> ", "fell N N on the <unk>"),
    ],
)
def test_ptb_examples(tokenized, natural):
    assert ptb_detokenize(tokenized) == natural


# --- whole files: line count and token preservation -----------------------------

_MARKERS = {"@-@": "-", "@,@": ",", "@.@": "."}


def _without_space(text: str) -> str:
    return re.sub(r"\s", "", text)


@pytest.mark.parametrize("rel", WIKITEXT_FILES + [PTB_TEST])
def test_detokenizer_only_changes_spaces(rel):
    """Invertibility in the sense that matters: only spacing (and the @x@ markers) change.

    Headings need no special case: "= = Career = =" and "== Career ==" agree without spaces.
    """
    text = read_data(rel)
    detok = ptb_detokenize(text) if rel == PTB_TEST else wikitext_detokenize(text)
    assert detok.count("\n") == text.count("\n")
    expected = text
    for marker, char in _MARKERS.items():
        expected = expected.replace(marker, char)
    assert _without_space(detok) == _without_space(expected)
    # Every line-level token run lines up: a line is empty exactly when it was blank.
    for before, after in zip(text.split("\n"), detok.split("\n")):
        assert (before.strip() == "") == (after == "")
        assert after == after.strip()


@pytest.mark.parametrize("rel", WIKITEXT_FILES)
def test_wikitext_artifacts_are_gone(rel):
    detok = wikitext_detokenize(read_data(rel))
    assert "@" not in detok
    for artifact in (" ,", " ;", " )", "( ", " n't", "  "):
        assert artifact not in detok
    assert detok.count("\n== ") > 100  # section headings kept, in "==" form
    assert "\n= = " not in detok


def test_ptb_artifacts_are_gone():
    detok = ptb_detokenize(read_data(PTB_TEST))
    assert " n't" not in detok and " 's" not in detok and "$ N" not in detok
    assert detok.count("<unk>") == 4794  # unknown words are kept verbatim


# --- stop words ----------------------------------------------------------------


def test_stopword_list_is_nltks_english_list():
    assert len(ENGLISH_STOPWORDS) == 179
    assert {"ourselves", "hers", "yourself", "mightn't", "should've", "any", "ma"} <= ENGLISH_STOPWORDS
    # Words that other, longer stop-word lists have but NLTK's english list does not.
    assert not {"would", "could", "also", "among", "however"} & ENGLISH_STOPWORDS
    assert all(w == w.lower() and " " not in w for w in ENGLISH_STOPWORDS)
