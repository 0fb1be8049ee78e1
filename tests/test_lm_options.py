"""The language-modelling tasks' options on the real files (WikiText-2/103, PTB) and on small files in
the upstream formats (enwik8, One Billion Word): `stride` (overlapping windows), `detokenize`
(paper | none | megatron), `streams` (1BW's shard as one stream); each option changes the requests,
so the cache keys, and is recorded in the task's key, protocol and the report."""
import csv
import hashlib
import json
import math

import pytest

from conftest import DATA
from gpt2eval.api.data import DataSource
from gpt2eval.api.plugins import discover, select
from gpt2eval.cli.main import main
from gpt2eval.engine.encode import Encoder
from gpt2eval.errors import UserError
from gpt2eval.protocols.detokenize import count_original_tokens, wikitext_detokenize
from gpt2eval.protocols.detokenize_megatron import ptb_detokenize_megatron, wikitext_detokenize_megatron

LIMIT = 60  # WikiText-2 lines: 3,116 GPT-2 tokens once de-tokenized, three windows and a bit


def load(spec):
    t = select([spec])[0]
    return t, t.load(DataSource(DATA))


def windows(tokenizer, request):
    """The score items the engine forwards for one rolling request, as its cache keys them."""
    (items,), _ = Encoder(tokenizer, 1024).rolling([request])
    return items


def test_no_option_shadows_a_method_of_its_task():
    """An option becomes an instance attribute: one named like a method would replace it."""
    for name, cls in discover().items():
        for option in cls.options:
            assert not callable(getattr(cls, option, None)), f"{name}: option {option} shadows a method"


def test_stride_makes_overlapping_windows_of_the_same_tokens(tokenizer):
    plain, ds = load("wikitext2")
    strided = select(["wikitext2:stride=256"])[0]
    assert (strided.key, strided.stride, plain.stride) == ("wikitext2:stride=256", 256, None)
    a, b = plain.requests(ds.examples[:LIMIT])["stream"], strided.requests(ds.examples[:LIMIT])["stream"]
    assert a.text == b.text and (a.stride, b.stride) == (None, 256)
    disjoint, overlapping = windows(tokenizer, a), windows(tokenizer, b)
    scored = [t for it in disjoint for t in it.targets]
    assert scored == [t for it in overlapping for t in it.targets] and len(scored) == 3116  # every token once
    assert [len(it.targets) for it in overlapping[1:-1]] == [256] * (len(overlapping) - 2)
    assert all(len(it.input_ids) == 1024 for it in overlapping[1:])          # later windows see 768 before
    forwarded = [sum(len(it.input_ids) for it in w) for w in (disjoint, overlapping)]
    assert forwarded == [4 * 1024, 10 * 1024]  # the last disjoint window too is filled with context
    shared = {it.key() for it in disjoint} & {it.key() for it in overlapping}   # other cache keys, but for the
    assert shared == {disjoint[0].key(), disjoint[-1].key()} == {overlapping[0].key(), overlapping[-1].key()}
    # same first window, and the same last one (a disjoint stream's last window is filled with context too)
    assert "stride 256" in strided.protocol["windows"] and "disjoint" in plain.protocol["windows"]


@pytest.mark.parametrize("spec,message", [
    ("wikitext103:stride=0", "task wikitext103: option stride=0 must be a positive number of tokens"),
    ("enwik8:stride=-4", "task enwik8: option stride=-4 must be a positive number of tokens"),
    ("1bw:stride=0", "task 1bw: option stride=0 must be a positive number of tokens"),
    ("ptb:stride=many", "task ptb: option stride=many is not an integer"),
    ("ptb:digits=1,detokenize=megatron", "task ptb: digits=1 goes with detokenize=paper only"),
])
def test_a_bad_lm_option_is_one_line(spec, message):
    with pytest.raises(UserError) as e:
        select([spec])
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


@pytest.fixture(scope="module")
def stride_run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("stride-run")
    assert main(["--model", str(tiny_model_dir), "--tasks", "wikitext2,wikitext2:stride=256", "--data-dir", str(DATA),
                 "--limit", str(LIMIT), "--output", str(out), "--reference-size", "small", "--no-progress",
                 "--no-cache"]) == 0
    return out


def test_stride_forwards_more_tokens_gives_another_ppl_and_records_the_stride(stride_run):
    tasks = json.loads((stride_run / "results.json").read_text())["tasks"]
    plain, strided = tasks["wikitext2"], tasks["wikitext2:stride=256"]
    assert (plain["tokens_forwarded"], strided["tokens_forwarded"]) == (4 * 1024, 10 * 1024)
    assert plain["extra"]["gpt2_tokens"] == strided["extra"]["gpt2_tokens"] == 3116
    assert plain["extra"]["original_tokens"] == strided["extra"]["original_tokens"]
    assert strided["metrics"]["ppl"] != pytest.approx(plain["metrics"]["ppl"], rel=1e-6)
    assert strided["options"]["stride"] == 256 and plain["options"]["stride"] is None
    assert "stride=256" in strided["protocol"]["options"] and "stride 256" in strided["protocol"]["windows"]
    rows = (stride_run / "samples" / "wikitext2@stride=256.jsonl").read_text().splitlines()
    assert len(rows) == LIMIT and sum(json.loads(r)["gpt2_tokens"] for r in rows) == 3116


def test_a_strided_task_is_a_variant_of_its_base_in_every_table(stride_run, tmp_path):
    with open(stride_run / "comparison.csv", newline="") as f:
        paper = {(r["task"], r["metric"]): r["paper"] for r in csv.DictReader(f)}
    assert paper[("wikitext2", "ppl")] == paper[("wikitext2:stride=256", "ppl")] == "29.41"
    tidy, t3, md = tmp_path / "tidy.csv", tmp_path / "t3.csv", tmp_path / "report.md"
    assert main(["compare", str(stride_run), "--csv", str(tidy), "--table3-csv", str(t3),
                 "--markdown", str(md)]) == 0
    with open(tidy, newline="") as f:
        rows = [r for r in csv.DictReader(f)
                if (r["task"], r["source"], r["size"]) == ("wikitext2:stride=256", "paper", "small")]
    assert {(r["metric"], r["reference"], r["value"]) for r in rows} == {
        ("ppl", "wikitext2/ppl", "29.41"), ("word_ppl", "wikitext2/ppl", "29.41")}
    with open(t3, newline="") as f:
        table = {r["source"]: r for r in csv.DictReader(f) if r["size"] == "small"}
    assert table["paper"]["WikiText2 (PPL) [wikitext2:stride=256/ppl]"] == "29.41"
    assert float(table["gpt2eval"]["WikiText2 (PPL) [wikitext2:stride=256/ppl]"]) != pytest.approx(
        float(table["gpt2eval"]["WikiText2 (PPL) [ppl]"]))
    head = md.read_text().split("## Table 3 layout")[0]
    sections = [line[3:] for line in head.splitlines() if line.startswith("## ")]
    assert sections[1:] == ["wikitext2", "wikitext2:stride=256"]


@pytest.mark.parametrize("name,relpath", [("wikitext103", "wikitext/wikitext-103/wiki.test.tokens"),
                                          ("wikitext2", "wikitext/wikitext-2/wiki.test.tokens")])
def test_detokenize_none_and_megatron_on_wikitext(name, relpath, tokenizer):
    text = (DATA / relpath).read_text(encoding="utf-8")
    scored, keys = {}, {}
    for choice in ("paper", "none", "megatron"):
        t, ds = load(f"{name}:detokenize={choice}")
        assert sum(count_original_tokens(o) for o, _ in ds.examples) == 245569  # the paper's normalisation
        assert [o for o, _ in ds.examples] == text.splitlines(keepends=True)
        scored[choice] = t.requests(ds.examples)["stream"].text
        keys[choice] = {it.key() for it in windows(tokenizer, t.requests(ds.examples[:40])["stream"])}
    assert scored["none"] == text                                   # the file as it is
    assert scored["paper"] == wikitext_detokenize(text)
    assert scored["megatron"] == wikitext_detokenize_megatron(text)
    lines = {k: v.split("\n") for k, v in scored.items()}
    differ = sum(a != b for a, b in zip(lines["paper"], lines["megatron"]))
    assert differ == (571 if name == "wikitext103" else 550)
    assert keys["paper"].isdisjoint(keys["none"]) and keys["paper"].isdisjoint(keys["megatron"])
    assert select([f"{name}:detokenize=megatron"])[0].protocol["detokenizer"].endswith("wikitext_detokenize_megatron")


def test_detokenize_on_ptb():
    text = (DATA / "ptb/ptb.test.txt").read_text(encoding="utf-8")
    _, none = load("ptb:detokenize=none")
    t, megatron = load("ptb:detokenize=megatron")
    assert "".join(d for _, d in none.examples) == text
    assert "".join(d for _, d in megatron.examples) == ptb_detokenize_megatron(text)
    assert sum(count_original_tokens(o) for o, _ in megatron.examples) == 82430
    assert t.key == "ptb:detokenize=megatron" and "Megatron-LM's ' N ' rule" in t.protocol["unk_and_N"]


# ---- enwik8 and One Billion Word: small files in the upstream formats -----------------------------

def test_enwik8_stride_scores_the_same_tokens_with_more_context(tmp_path, monkeypatch, engine_factory):
    import random
    import zipfile

    from gpt2eval.protocols import download
    monkeypatch.setenv("GPT2EVAL_CACHE_DIR", str(tmp_path / "cache"))
    rng = random.Random(0)  # varied lines (the engine computes a repeated window once): a block of 1,000
    words = ["<page>", "[[Anarchism]]", "'''political'''", "philosophy", "the", "of", "&amp;", "</text>", "1880"]
    block = "".join(" ".join(rng.choice(words) for _ in range(rng.randint(3, 20))) + "\n" for _ in range(1000))
    data = (block * (5_100_000 // len(block) + 1)).encode()  # longer than the 80 lines scored
    with zipfile.ZipFile(tmp_path / "enwik8.zip", "w", zipfile.ZIP_STORED) as z:
        z.writestr("enwik8", data)
    raw = (tmp_path / "enwik8.zip").read_bytes()
    remote = download.Remote("enwik8/enwik8.zip", (tmp_path / "enwik8.zip").as_uri(), len(raw),
                             sha256=hashlib.sha256(raw).hexdigest())
    results = {}
    for spec in ("enwik8", "enwik8:stride=256"):
        t = select([spec])[0]
        t.remote = remote
        examples = t.load(DataSource(None)).examples[:80]   # 80 lines, three windows
        engine = engine_factory()
        (result,) = engine.run([t.requests(examples)["stream"]])
        results[spec] = (t.score(examples, {"stream": result}), engine.stats.tokens_forwarded, t.protocol)
    (plain, n_plain, _), (strided, n_strided, protocol) = results["enwik8"], results["enwik8:stride=256"]
    assert plain.extra["gpt2_tokens"] == strided.extra["gpt2_tokens"] > 1024
    assert n_plain == 1024 * math.ceil(plain.extra["gpt2_tokens"] / 1024) and n_strided > 2 * n_plain
    assert strided.metrics["bits_per_byte"] != pytest.approx(plain.metrics["bits_per_byte"], rel=1e-6)
    assert "stride 256" in protocol["windows"] and list(protocol)[-1] == "normalisation"


SENTENCES = ["The council said on Tuesday it would review the plan , which critics say is too costly .",
             "\" We do n't know yet , \" a spokesman said .",
             "Shares in the company 's parent rose 3.2 per cent to $ 14.50 ( about £ 9 ) .",
             "It was the team 's third win in a row ."]


def test_1bw_streams_shard_scores_the_sentences_as_one_stream(tmp_path, engine_factory):
    text = "\n".join(SENTENCES) + "\n"
    shard = tmp_path / "1bw" / "news.en.heldout-00000-of-00050"
    shard.parent.mkdir()
    shard.write_text(text)
    scored = {}
    for spec in ("1bw", "1bw:streams=shard"):
        t = select([spec])[0]
        t.shard_md5 = hashlib.md5(text.encode()).hexdigest()
        ds = t.load(DataSource(tmp_path))
        named = t.requests(ds.examples)
        engine = engine_factory()
        answers = {k: (engine.run(v) if isinstance(v, list) else engine.run([v])[0]) for k, v in named.items()}
        scored[spec] = t.score(ds.examples, answers), named, t
    (sentences, per_sentence, _), (stream, one, shard_task) = scored["1bw"], scored["1bw:streams=shard"]
    assert len(per_sentence["sentence"]) == 4 and one["shard"].text == "".join(r.text for r in per_sentence["sentence"])
    assert shard_task.key == "1bw:streams=shard" and "shard as one stream" in shard_task.protocol["streams"]
    a, b = sentences.samples, stream.samples
    assert [r["gpt2_tokens"] for r in a] == [r["gpt2_tokens"] for r in b]   # the same tokens, here
    assert a[0]["nll"] == pytest.approx(b[0]["nll"], rel=1e-4)              # the first: after <|endoftext|> both
    assert all(x["nll"] != pytest.approx(y["nll"], rel=1e-4) for x, y in zip(a[1:], b[1:]))  # later: context
    assert stream.extra["original_tokens"] == sentences.extra["original_tokens"] == sum(len(s.split()) + 1
                                                                                      for s in SENTENCES)
    assert stream.metrics["ppl"] == pytest.approx(math.exp(sum(r["nll"] for r in b) / stream.extra["original_tokens"]))
