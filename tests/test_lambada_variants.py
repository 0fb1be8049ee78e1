"""LAMBADA's variants on the real file: OpenAI's preprocessing (lambada:preprocess=openai), bflm's stop-word
filter beside the NLTK one (checked against a literal re-implementation of bflm's search on the
tiny trained model), and the pairing of each accuracy with the paper's filtered or unfiltered row."""
import csv
import json

import pytest
import torch

from conftest import DATA, SHARED
from gpt2eval.cli.main import main
from gpt2eval.api.data import DataSource
from gpt2eval.engine.decode import suppressed_ids
from gpt2eval.protocols.stopwords import BFLM_STOPWORDS, ENGLISH_STOPWORDS
from gpt2eval.api.plugins import select

TINY = SHARED / "models" / "tiny-lambada"


@pytest.fixture(scope="module")
def both():
    plain, pre = select(["lambada", "lambada:preprocess=openai"])
    return plain.load(DataSource(DATA)).examples, pre.load(DataSource(DATA)).examples


def test_bflm_list_is_nltks_older_127_words():
    assert len(BFLM_STOPWORDS) == 127 and BFLM_STOPWORDS < ENGLISH_STOPWORDS
    assert {"s", "t", "don", "now", "the"} <= BFLM_STOPWORDS
    assert not {w for w in BFLM_STOPWORDS if "'" in w} and not {"d", "ll", "won", "ain"} & BFLM_STOPWORDS


def test_preprocessing_changes_exactly_the_passages_with_curly_double_quotes(both, tokenizer):
    plain, pre = both
    assert len(pre) == len(plain) == 5153
    nl = tokenizer.encode("\n")
    changed = quoted = 0
    for (c0, t0), (c1, t1) in zip(plain, pre):
        has_quote = "“" in c0 + t0 or "”" in c0 + t0
        quoted += has_quote
        assert c1.startswith("\n") and "“" not in c1 + t1 and "”" not in c1 + t1
        same = tokenizer.encode(c1 + t1) == nl + tokenizer.encode(c0 + t0)  # only the leading newline is new
        changed += not same
        assert same != has_quote
    assert quoted == changed == 1622
    assert sum(any(q in c + t for q in "“”‘’") for c, t in plain) == 1978
    single = lambda examples: sum("‘" in c + t or "’" in c + t for c, t in examples)  # noqa: E731
    assert single(pre) == single(plain)  # curly single quotes are left alone


def test_stop_word_targets_counted_on_the_real_file(both):
    from gpt2eval.tasks.lambada import PUNCT, bflm_split, first_word, fold
    plain, _ = both
    assert sum((c + t).split()[-1].strip(PUNCT).lower() in ENGLISH_STOPWORDS for c, t in plain) == 51
    assert sum(first_word(t).lower() in ENGLISH_STOPWORDS for _, t in plain) == 54
    assert sum(fold(bflm_split(c + t)[1]) in BFLM_STOPWORDS for c, t in plain) == 48
    # bflm's word rule splits off punctuation: '"Nadia' is the target Nadia after a context ending in '"'
    differ = [(c, t) for c, t in plain if bflm_split(c + t)[0] != c]
    assert len(differ) == 40
    assert all(bflm_split(c + t)[1] in t and bflm_split(c + t)[0].startswith(c) for c, t in differ)


def test_bflm_filter_bans_mid_word_stop_word_tokens_the_nltk_filter_allows(tokenizer):
    memo = {}
    nltk = set(suppressed_ids(tokenizer, tuple(sorted(ENGLISH_STOPWORDS)), memo))
    bflm = set(suppressed_ids(tokenizer, tuple(sorted(BFLM_STOPWORDS)), memo, "stripped_text"))
    assert len(memo) == 2  # one entry per mode
    the, space_the, space_The, s = (tokenizer.convert_tokens_to_ids(t) for t in ("the", "Ġthe", "ĠThe", "s"))
    assert {the, s} <= bflm - nltk          # mid-word pieces: bflm bans them, NLTK's word-initial rule does not
    assert space_the in bflm & nltk
    assert space_The in nltk - bflm         # bflm's match is case-sensitive
    assert tokenizer.convert_tokens_to_ids("Ġdon't") not in bflm  # not a token; "don" is
    assert all(tokenizer.decode([i]).strip() in BFLM_STOPWORDS for i in bflm)


def test_suppress_mode_is_checked_and_keys_the_cache(tokenizer):
    from gpt2eval.engine.encode import Encoder
    from gpt2eval.api.requests import Decoding, Generation
    with pytest.raises(ValueError, match="suppress_mode"):
        Decoding(suppress_words=("the",), suppress_mode="anywhere")
    encoder = Encoder(tokenizer, 1024, seed=0)
    words = tuple(sorted(BFLM_STOPWORDS))
    keys = {encoder.generation_key(Generation("a", 6, decoding=Decoding(suppress_words=words, suppress_mode=m)), [64])
            for m in ("word_initial", "stripped_text")}
    assert len(keys) == 2


def bflm_literal(model, tokenizer, context: str, banned_words: frozenset, steps: int = 6, width: int = 128) -> str:
    """bflm's eval_lambada_slow.py search, written out: at each step take the top `width`
    candidates and keep the first whose decoded, stripped text is not a stop word."""
    ids = tokenizer.encode(context)
    for _ in range(steps):
        with torch.no_grad():
            logits = model(torch.tensor([ids])).logits[0, -1]
        for cand in torch.topk(logits, width).indices.tolist():
            if tokenizer.decode([cand]).strip() not in banned_words:
                ids.append(cand)
                break
    return tokenizer.decode(ids[len(tokenizer.encode(context)):])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("lambada-variants")
    assert main(["--model", str(TINY), "--tasks", "lambada,lambada:preprocess=openai", "--data-dir", str(DATA),
                 "--limit", "40", "--output", str(out), "--reference-size", "xl", "--no-progress", "--no-cache"]) == 0
    return out


def test_tiny_model_filters_against_a_literal_bflm_search(tiny_run, tokenizer):
    from transformers import AutoModelForCausalLM

    from gpt2eval.tasks.lambada import basic_words, bflm_split, fold
    model = AutoModelForCausalLM.from_pretrained(TINY, dtype=torch.float32).eval()
    results = json.loads((tiny_run / "results.json").read_text())
    for name, stem in (("lambada", "lambada"), ("lambada:preprocess=openai", "lambada@preprocess=openai")):
        m = results["tasks"][name]["metrics"]
        rows = [json.loads(line) for line in (tiny_run / "samples" / f"{stem}.jsonl").read_text().splitlines()]
        assert len(rows) == 40 and m["acc_stopword_filter_bflm"] > 0 and m["acc_stopword_filter"] > 0
        for metric, flag in (("acc", "correct"), ("acc_last_token", "correct_last_token"),
                             ("acc_stopword_filter", "correct_stopword_filter"),
                             ("acc_stopword_filter_bflm", "correct_stopword_filter_bflm")):
            assert m[metric] == pytest.approx(100 * sum(r[flag] for r in rows) / 40)  # recomputable per example
    plain = select(["lambada"])[0].load(DataSource(DATA)).examples[:12]
    rows = [json.loads(line) for line in (tiny_run / "samples" / "lambada.jsonl").read_text().splitlines()]
    for (ctx, target), row in zip(plain, rows):
        context, word = bflm_split(ctx + target)
        text = bflm_literal(model, tokenizer, context, BFLM_STOPWORDS)
        assert row["bflm_target"] == word
        assert row["stopword_filter_bflm_prediction"] == (basic_words(text) or [""])[0]
        assert row["correct_stopword_filter_bflm"] == (fold(row["stopword_filter_bflm_prediction"]) == fold(word))


def test_each_accuracy_is_paired_with_the_papers_filtered_or_unfiltered_row(tiny_run, tmp_path):
    with open(tiny_run / "comparison.csv", newline="") as f:
        rows = {(r["task"], r["metric"]): r for r in csv.DictReader(f)}
    for task in ("lambada", "lambada:preprocess=openai"):
        for metric in ("acc_stopword_filter", "acc_stopword_filter_bflm"):
            assert rows[(task, metric)]["reference"] == "lambada/acc" and rows[(task, metric)]["paper"] == "63.24"
        for metric in ("acc", "acc_last_token"):
            r = rows[(task, metric)]
            assert r["reference"] == "lambada/acc_without_stopword_filter" and r["paper"] == "52.66"
        assert rows[(task, "ppl")]["paper"] == "8.63"
    t3 = tmp_path / "t3.csv"
    assert main(["compare", str(tiny_run), "--table3-csv", str(t3)]) == 0
    with open(t3, newline="") as f:
        table = {r["source"]: r for r in csv.DictReader(f) if r["size"] == "xl"}
    assert table["paper"]["LAMBADA (ACC) [acc_stopword_filter]"] == "63.24"
    assert table["paper"]["LAMBADA (ACC) [lambada:preprocess=openai/acc_stopword_filter_bflm]"] == "63.24"
    assert table["paper"]["LAMBADA (ACC, no stop-word filter) [acc_last_token]"] == "52.66"
    assert "LAMBADA (ACC) [acc]" not in table["paper"]
    assert float(table["gpt2eval"]["LAMBADA (ACC, no stop-word filter) [acc]"]) == pytest.approx(
        float(rows[("lambada", "acc")]["ours"]))


def test_unfiltered_accuracies_have_no_paper_value_below_xl(tmp_path):
    out = tmp_path / "small"
    assert main(["--model", str(TINY), "--tasks", "lambada", "--data-dir", str(DATA), "--limit", "3",
                 "--output", str(out), "--reference-size", "small", "--no-progress", "--no-cache"]) == 0
    with open(out / "comparison.csv", newline="") as f:
        paper = {r["metric"]: r["paper"] for r in csv.DictReader(f)}
    assert paper == {"ppl": "35.13", "acc": "", "acc_last_token": "", "acc_stopword_filter": "45.99",
                     "acc_stopword_filter_bflm": "45.99"}
