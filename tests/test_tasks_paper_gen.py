"""Natural Questions and WMT-14 (both directions) on the real files in ../shared/data, `--tasks
paper`, and the other-experiments table: the paper's Sections 3.7 and 3.8 and its Section 5 command."""
import csv
import json
import re
import sys

import pytest
import sacrebleu

from conftest import DATA
from gpt2eval.api import plugins as plugins_module
from gpt2eval.cli.main import main
from gpt2eval.reporting.compare import load_references
from gpt2eval.reporting.tables import TABLE3, grid, other_rows, table3_rows
from gpt2eval.api.data import DataSource
from gpt2eval.errors import DataError, UserError
from gpt2eval.metrics import squad
from gpt2eval.api.plugins import PAPER_TASKS, discover, expand, select, split_spec

LIMIT = 3
WMT = DATA / "wmt14"


@pytest.fixture(scope="module")
def run(tiny_model_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper-gen-run")
    assert main(["--model", str(tiny_model_dir), "--tasks", "natural_questions,wmt14_fr_en,wmt14_en_fr",
                 "--data-dir", str(DATA), "--limit", str(LIMIT), "--output", str(out), "--reference-size", "xl",
                 "--no-progress", "--no-cache"]) == 0
    return out, json.loads((out / "results.json").read_text())


def module_of(name):
    return sys.modules[type(select([name])[0]).__module__]


def test_results_carry_metrics_subset_labels_protocol_and_provenance(run):
    out, results = run
    tasks = results["tasks"]
    assert set(tasks["natural_questions"]["metrics"]) == {"exact_match", "exact_match_top1pct", "f1"}
    # Offline the example pairs are taken from the data and left out of scoring: n_full says so.
    assert [tasks[t]["n_full"] for t in ("natural_questions", "wmt14_fr_en", "wmt14_en_fr")] == [3602, 2998, 2998]
    for name in ("wmt14_fr_en", "wmt14_en_fr"):
        t = tasks[name]
        assert set(t["metrics"]) == {"bleu", "bleu_first_sentence", "bleu_multibleu"} and t["subset"]
        assert t["n_examples"] == LIMIT
        assert t["extra"]["bleu_signature"].startswith("nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
        assert t["data"]["verified"] and t["data"]["reference"]["verified"]
        assert "newstest2014 segments 1-5" in t["data"]["examples_from"] and len(t["data"]["examples"]) == 5
        assert "sacrebleu" in t["protocol"]["metric"] and "examples" in t["protocol"]
    nq = tasks["natural_questions"]
    assert nq["data"]["verified"] and nq["data"]["examples"][0] == ["when was the last time anyone was on the moon",
                                                                    "14 December 1972 UTC"]
    rows = {(r["task"], r["metric"]): r for r in csv.DictReader(open(out / "comparison.csv"))}
    assert float(rows["natural_questions", "exact_match"]["paper"]) == 4.1
    assert float(rows["wmt14_fr_en", "bleu"]["paper"]) == 11.5 and float(rows["wmt14_en_fr", "bleu"]["paper"]) == 5
    assert rows["wmt14_fr_en", "bleu_first_sentence"]["reference"] == "wmt14_fr_en/bleu"


def test_samples_hold_hypothesis_and_reference_and_bleu_is_sacrebleus(run):
    out, results = run
    for name in ("wmt14_fr_en", "wmt14_en_fr"):
        samples = [json.loads(x) for x in (out / "samples" / f"{name}.jsonl").read_text().splitlines()]
        assert len(samples) == LIMIT and samples[0]["id"] == "1016-latimes/3"  # segment 6 of the file
        hyps, refs = [s["hypothesis"] for s in samples], [s["reference"] for s in samples]
        assert results["tasks"][name]["metrics"]["bleu"] == sacrebleu.corpus_bleu(hyps, [refs]).score
        assert (out / "predictions" / f"{name}.txt").read_text() == "".join(h + "\n" for h in hyps)
        assert (out / "references" / f"{name}.txt").read_text() == "".join(r + "\n" for r in refs)
        assert all("\n" not in h for h in hyps)
    nq = [json.loads(x) for x in (out / "samples" / "natural_questions.jsonl").read_text().splitlines()]
    assert [s["line"] for s in nq] == [9, 10, 11] and all("\n" not in s["answer"] and s["golds"] for s in nq)
    # the example pairs are every prompt's shared prefix: forwarded once, not once per question
    assert results["tasks"]["natural_questions"]["prefill_tokens"] < 0.5 * sum(s["prompt_tokens"] for s in nq)


def test_score_reproduces_the_runs_numbers(run, tmp_path, capsys):
    out, results = run
    name = "wmt14_en_fr"
    assert main(["score", "--task", name, "--gold", str(out / "references" / f"{name}.txt"), "--predictions",
                 str(out / "predictions" / f"{name}.txt"), "--output", str(tmp_path / "w")]) == 0
    scored = json.loads((tmp_path / "w" / "results.json").read_text())["tasks"][name]
    assert scored["metrics"]["bleu"] == results["tasks"][name]["metrics"]["bleu"]
    assert scored["intervals"]["bleu"] == results["tasks"][name]["intervals"]["bleu"]  # same segments, same seed
    lines = (DATA / "nq_open" / "NQ-open.dev.jsonl").read_text().splitlines(True)
    (tmp_path / "gold.jsonl").write_text("".join(lines[8:8 + LIMIT]))  # the questions the run scored
    assert main(["score", "--task", "natural_questions", "--gold", str(tmp_path / "gold.jsonl"), "--predictions",
                 str(out / "predictions" / "natural_questions.json"), "--output", str(tmp_path / "n")]) == 0
    scored = json.loads((tmp_path / "n" / "results.json").read_text())["tasks"]["natural_questions"]
    # exact_match_top1pct needs the model's probabilities, which a predictions file does not hold
    run_metrics = results["tasks"]["natural_questions"]["metrics"]
    assert scored["metrics"] == {m: run_metrics[m] for m in ("exact_match", "f1")}
    run_iv = results["tasks"]["natural_questions"]["intervals"]
    assert set(scored["intervals"]) == set(run_iv) - {"exact_match_top1pct"} == {"exact_match", "f1"}
    for m, iv in scored["intervals"].items():
        assert {k: iv[k] for k in ("stderr", "ci_low", "ci_high")} == pytest.approx(
            {k: run_iv[m][k] for k in ("stderr", "ci_low", "ci_high")}) and iv["method"] == run_iv[m]["method"]


def test_natural_questions_prompt_and_examples_never_scored():
    t = select(["natural_questions"])[0]
    ds = t.load(DataSource(DATA))
    shots = squad.read_nq_open(DATA / "nq_open" / "NQ-open.dev.jsonl")[:8]
    assert len(ds.examples) == 3602 and not {q["question"] for q in shots} & {e["question"] for e in ds.examples}
    (req,) = t.requests(ds.examples[:1])["answer"]
    assert req.context.startswith("Q: when was the last time anyone was on the moon\nA: 14 December 1972 UTC\n"
                                  "Q: who wrote he ain't heavy he's my brother lyrics\nA: Bobby Scott\n")
    assert req.context.endswith(f"\nQ: {ds.examples[0]['question']}\nA:") and req.context.count("\nA: ") == 8
    assert req.stop == ("\n",) and req.decoding.greedy and req.prefix == ds.examples[0]["shots"]


def test_natural_questions_from_hub_rows_uses_train_examples(monkeypatch):
    splits = {"validation": [{"question": f"dev question {i}", "answer": [f"a{i}"]} for i in range(3)],
              "train": [{"question": f"train question {i}", "answer": [f"t{i}", "x"]} for i in range(10)]}

    def hub(self, name, config, split, **k):  # nq_open only: the original release cannot be loaded
        if name != "google-research-datasets/nq_open":
            raise DataError(f"cannot load {name} (offline)")
        return splits[split]
    monkeypatch.setattr(DataSource, "hub", hub)
    ds = select(["natural_questions"])[0].load(DataSource(None))
    assert ds.source["golds_used"] == "nq_open" and "cannot load google-research-datasets/natural_questions" in \
        ds.source["fallback"]
    assert ds.n_full == 3 and [e["question"] for e in ds.examples] == ["dev question 0", "dev question 1",
                                                                       "dev question 2"]
    assert ds.examples[0]["shots"].startswith("Q: train question 0\nA: t0\n") and "train question 8" not in \
        ds.examples[0]["shots"] and "train" in ds.source["examples_from"]


def test_wmt_prompt_and_example_pairs_never_scored():
    t = select(["wmt14_fr_en"])[0]
    ds = t.load(DataSource(DATA))
    ids = [e["id"] for e in ds.examples]
    assert len(ids) == 2998 and ids[0] == "1016-latimes/3" and not {"1009-lemondefr/1", "1016-latimes/2"} & set(ids)
    (req,) = t.requests(ds.examples[:1])["translation"]
    lines = req.context.split("\n")
    assert lines[0] == 'Spectaculaire saut en "wingsuit" au-dessus de Bogota = Spectacular Wingsuit Jump Over Bogota'
    assert len(lines) == 6 and lines[-1] == ds.examples[0]["source"] + " =" and all(" = " in x for x in lines[:5])
    assert req.max_new_tokens == 16 + len(ds.examples[0]["source"]) // 3
    en_fr = select(["wmt14_en_fr"])[0]
    first = en_fr.load(DataSource(DATA)).examples[0]
    assert first["id"] == ids[0] and en_fr.requests([first])["translation"][0].max_new_tokens == 16 + int(len(first["source"]) * 2 / 3)


def test_sgml_segments_equal_sacrebleus_and_keep_bare_ampersands():
    read_sgml = module_of("wmt14_fr_en").read_sgml
    for path in sorted(WMT.glob("*.sgm")):
        ours = [text for _, text in read_sgml(path)]
        # sacrebleu's own reading of WMT SGML (dataset/fake_sgml.py), called line by line
        theirs = [re.sub(r"\s+", " ", re.sub(r"<seg.*?>(.*)</seg>.*?", "\\1", line).strip())
                  for line in path.read_text().splitlines() if line.startswith("<seg ")]
        assert ours == theirs and len(ours) == 3003
    assert any("S&P" in t for _, t in read_sgml(WMT / "newstest2014-fren-src.en.sgm"))


def test_sgml_entities_and_malformed_files(tmp_path):
    read_sgml = module_of("wmt14_fr_en").read_sgml
    good = '<srcset setid="x" srclang="any">\n<doc docid="d1" origlang="en">\n<seg id="1">A &amp; B &#233;t&#xE9; S&P</seg>\n</doc>\n</srcset>\n'
    (tmp_path / "good.sgm").write_text(good)
    assert read_sgml(tmp_path / "good.sgm") == [("d1/1", "A & B été S&P")]
    for text, line in [(good.replace("</seg>", ""), 3), (good.replace('<doc docid="d1" origlang="en">\n', ""), 2),
                       (good.replace("</doc>", "stray text"), 4)]:
        (tmp_path / "bad.sgm").write_text(text)
        with pytest.raises(DataError, match=rf"bad.sgm, line {line}: "):
            read_sgml(tmp_path / "bad.sgm")


def test_wmt_hub_rows_use_newstest2013_examples(monkeypatch):
    pair = lambda i, s: {"translation": {"fr": f"phrase {s}{i}", "en": f"sentence {s}{i}"}}  # noqa: E731
    splits = {"test": [pair(i, "t") for i in range(4)], "validation": [pair(i, "v") for i in range(9)]}
    monkeypatch.setattr(DataSource, "hub", lambda self, name, config, split, **k: splits[split])
    ds = select(["wmt14_en_fr"])[0].load(DataSource(None))
    assert ds.n_full == 4 and ds.examples[0]["source"] == "sentence t0" and ds.examples[0]["reference"] == "phrase t0"
    assert ds.examples[0]["shots"] == "".join(f"sentence v{i} = phrase v{i}\n" for i in range(5))


def test_first_sentence_cut_uses_the_target_language():
    first = module_of("wmt14_en_fr").first_sentence
    assert first("M. Dupont est parti. Il reviendra.", "fr") == "M. Dupont est parti."
    assert first("", "en") == ""


def test_squad_normalisation_as_the_official_script():
    assert squad.normalize_answer("The  Beatles!") == "beatles" and squad.normalize_answer("farmer's") == "farmers"
    assert squad.best_exact_match("an Apple.", ["pear", "apple"]) == 1.0
    assert squad.best_exact_match("apples", ["apple"]) == 0.0
    assert squad.best_f1("the big apple", ["apple pie"]) == pytest.approx(0.5)


def test_malformed_nq_file_names_file_and_line(tmp_path):
    (tmp_path / "nq.jsonl").write_text('{"question": "q", "answer": ["a"]}\n\n{"question": "q2", "answer": "a"}\n')
    with pytest.raises(DataError, match=r"nq.jsonl, line 3: 'answer' is not a non-empty list"):
        squad.read_nq_open(tmp_path / "nq.jsonl")


# ---- --tasks paper --------------------------------------------------------------------------------

def test_paper_expands_to_every_experiment_once():
    assert expand(["paper"]) == list(PAPER_TASKS) and len(PAPER_TASKS) == 16
    assert expand(["ptb", "paper", "triviaqa"])[:2] == ["ptb", "lambada"] and expand(["ptb", "paper"]).count("ptb") == 1
    assert "triviaqa" not in PAPER_TASKS  # the paper reports no TriviaQA number
    assert {"cbt_cn", "cbt_ne", "enwik8", "text8", "1bw", "winograd", "natural_questions", "wmt14_fr_en",
            "wmt14_en_fr", "lambada", "lambada:preprocess=openai", "ptb", "wikitext2", "wikitext103", "coqa",
            "cnn_dailymail"} <= set(PAPER_TASKS)


NOT_IN_PAPER = {"triviaqa": "the paper reports no TriviaQA number"}


def test_every_builtin_task_is_in_the_paper_list_or_left_out_for_a_reason():
    """A new experiment of the paper must be added to PAPER_TASKS (a tripwire for new tasks)."""
    names = {split_spec(s)[0] for s in PAPER_TASKS}
    assert set(discover()) - names == set(NOT_IN_PAPER)
    assert names <= set(discover())  # every listed name is an installed task
    assert [t.key for t in select(["paper"])] == list(PAPER_TASKS)  # each entry's options are real ones


def test_select_paper_names_the_tasks_this_installation_lacks(monkeypatch):
    installed = discover()
    fake = {n: installed[n] for n in {split_spec(s)[0] for s in PAPER_TASKS} if n != "1bw"}
    monkeypatch.setattr(plugins_module, "discover", lambda include_paths=(): fake)
    with pytest.raises(UserError, match=r"--tasks paper needs the task\(s\) 1bw,"):
        select(["paper"])
    fake["1bw"] = installed["1bw"]
    assert len(select(["paper"])) == 16


# ---- the report's tables -------------------------------------------------------------------------

def record(task, metric, reference, value, size="xl", n=(10, 100)):
    return {"task": task, "metric": metric, "size": size, "value": value, "variant": "v", "reference": reference,
            "higher_is_better": True, "n_examples": n[0], "n_full": n[1], "subset": n[0] < n[1], "model": "m",
            "n_params": 1, "run": "r"}


def test_other_rows_pair_each_experiment_with_the_papers_number():
    refs = load_references()
    cells = grid([record("wmt14_fr_en", "bleu", "wmt14_fr_en/bleu", 9.0),
                  record("wmt14_fr_en", "bleu_first_sentence", "wmt14_fr_en/bleu", 8.0),
                  record("natural_questions", "exact_match", "natural_questions/exact_match", 3.0, size="small")], refs)
    rows = {(r["task"], r["metric"], r["size"]): r for r in other_rows(cells, refs)}
    assert rows["wmt14_fr_en", "bleu", "xl"]["paper"] == 11.5 and rows["wmt14_fr_en", "bleu", "xl"]["diff"] == -2.5
    assert rows["wmt14_fr_en", "bleu_first_sentence", "xl"]["ours"] == 8.0
    assert rows["natural_questions", "exact_match", "small"]["paper"] == 0.77  # derived: 4.1 / 5.3
    assert rows["natural_questions", "exact_match", "xl"]["paper"] == 4.1
    assert rows["winograd", "acc", "xl"]["paper"] == 70.7 and rows["winograd", "acc", "xl"]["ours"] is None
    assert rows["coqa", "f1", "xl"]["paper"] == 55.0 and rows["cnn_dailymail", "tldr_rouge_avg", "xl"]["paper"] == 21.4


def test_table3_fills_the_columns_of_the_new_lm_tasks():
    refs = load_references()
    keys = [ref for _, ref in TABLE3 if not ref.startswith("lambada/")]
    cells = grid([record(ref.split("/")[0], ref.split("/")[1], ref, float(i)) for i, ref in enumerate(keys, 1)], refs)
    ours = next(r for r in table3_rows(cells, refs) if r["size"] == "xl" and r["source"] == "gpt2eval")
    labels = [label for label, ref in TABLE3 if not ref.startswith("lambada/")]
    assert [ours[label] for label in labels] == [float(i) for i in range(1, len(keys) + 1)]
    assert labels == ["CBT-CN (ACC)", "CBT-NE (ACC)", "WikiText2 (PPL)", "PTB (PPL)", "enwik8 (BPB)", "text8 (BPC)",
                      "WikiText103 (PPL)", "1BW (PPL)"]
