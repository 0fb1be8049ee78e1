"""The benchmark's data for both harnesses, read from the local upstream files (nothing is copied).

lm-evaluation-harness reaches these functions from the task YAMLs beside this file
(`custom_dataset: !function bench_data.<loader>`); its `metadata` carries `data_dir`. The gpt2eval
side of the benchmark imports the same functions, so both harnesses see the same documents.

Articles: WikiText's test file split into one document per article, as the hub dataset
EleutherAI/wikitext_document_level (which lm-eval's `wikitext` task reads) splits it: a new
document starts at every top-level heading line (" = Title = "); the lines are joined with "\n".
The document text is then de-tokenized by lm-eval's own `wikitext_detokenizer`, and words are
counted by lm-eval's own `process_results`, both loaded from the installed lm-eval by file path.
"""
from __future__ import annotations

import importlib.util
import json
from functools import lru_cache
from pathlib import Path

LAMBADA = "lambada/lambada_test.jsonl"
WIKITEXT2_RAW = "wikitext/wikitext-2-raw/wiki.test.raw"


def is_article_title(line: str) -> bool:
    """A level-1 heading such as " = Valkyria Chronicles III = " (and not " = = Gameplay = = ")."""
    squeezed = line.replace("= = =", "===").replace("= =", "==").strip()
    return squeezed.startswith("= ") and squeezed.endswith(" =")


def split_articles(text: str) -> list[str]:
    pages, current = [], []
    for line in text.split("\n"):
        if is_article_title(line):
            page = "\n".join(current)
            if page.strip():
                pages.append(page)
            current = []
        current.append(line)
    pages.append("\n".join(current))
    return pages


def wikitext_pages(data_dir: str) -> list[str]:
    return split_articles((Path(data_dir) / WIKITEXT2_RAW).read_text(encoding="utf-8"))


def lambada_texts(data_dir: str) -> list[str]:
    with open(Path(data_dir) / LAMBADA, encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f if line.strip()]


@lru_cache(maxsize=None)
def lm_eval_wikitext():
    """lm-eval's `tasks/wikitext/preprocess_wikitext.py`, loaded without importing lm-eval itself
    (so the gpt2eval side of the benchmark uses the very same code at no memory cost)."""
    spec = importlib.util.find_spec("lm_eval")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("lm-eval is not installed: pip install -e '.[bench]'")
    path = Path(list(spec.submodule_search_locations)[0]) / "tasks" / "wikitext" / "preprocess_wikitext.py"
    module_spec = importlib.util.spec_from_file_location("lm_eval_preprocess_wikitext", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def wikitext_detokenizer(doc: dict) -> str:
    return lm_eval_wikitext().wikitext_detokenizer(doc)


def wikitext_process_results(doc: dict, results):
    return lm_eval_wikitext().process_results(doc, results)


def word_count(page: str) -> int:
    """Words of an article as lm-eval's wikitext task counts them (before de-tokenization)."""
    return wikitext_process_results({"page": page}, [0.0])["word_perplexity"][1]


# ---- lm-eval custom_dataset loaders: keyword arguments come from the task metadata -------------
def _test_split(rows: list[dict]):
    import datasets
    return datasets.DatasetDict({"test": datasets.Dataset.from_list(rows)})


def lambada_dataset(data_dir: str, **_):
    return _test_split([{"text": t} for t in lambada_texts(data_dir)])


def wikitext_dataset(data_dir: str, **_):
    return _test_split([{"page": p} for p in wikitext_pages(data_dir)])
