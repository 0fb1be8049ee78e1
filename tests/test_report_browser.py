"""The HTML report in a real browser: headless Chromium (Debian's chromium and chromium-driver,
installed by .ci/run) renders `compare --html` in a 1,400-pixel window; no table may be wider than
the window, the page may not scroll sideways, and every plot image must load.

The runs are results.json files shaped like the runner's: three paper sizes with LAMBADA and PTB, a
model that matches no paper size, and CNN/DM (16 metrics, drawn twice per article) at xl."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from gpt2eval.cli.main import main

from test_report import LAMBADA, LAMBADA_INFO, PTB, PTB_INFO, task_block, write_run

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
WIDTH, HEIGHT = 1400, 1000
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", f"--window-size={WIDTH},{HEIGHT}"]


def cnn_block() -> dict:
    metrics, info = {}, {}
    for i, row in enumerate(("tldr", "no_hint", "random3", "lead3")):
        for j, s in enumerate(("rouge1", "rouge2", "rougeL", "rouge_avg")):
            metrics[f"{row}_{s}"] = 20.0 + 5 * i - 4 * j
            info[f"{row}_{s}"] = {"reference": f"cnn_dailymail/{row}_{s}", "variant": f"{row} prompt, ROUGE",
                                  "higher_is_better": True}
    block = task_block(metrics, info, 250, 11490, "frank_cnndm_test_250.jsonl")
    block["extra"] = {"across_draws": {m: {"values": [v - 0.4, v + 0.4], "mean": v, "sd": 0.57}
                                       for m, v in metrics.items() if m.startswith(("tldr", "no_hint"))}}
    block["paired"] = [{"a": "tldr_rouge_avg", "b": "no_hint_rouge_avg", "diff": -5.0, "stderr": 0.8,
                        "ci_low": -6.6, "ci_high": -3.4, "method": "paired percentile bootstrap", "n": 250}]
    return block


@pytest.fixture()
def report(tmp_path) -> Path:
    for i, (size, lam) in enumerate(LAMBADA.items()):
        tasks = {"lambada": task_block(lam, LAMBADA_INFO, 5153, 5153, "lambada_test.jsonl")}
        if size in PTB:
            tasks["ptb"] = task_block(PTB[size], PTB_INFO, 3761, 3761, "ptb.test.txt")
        if size == "xl":
            tasks["cnn_dailymail"] = cnn_block()
        write_run(tmp_path / "runs" / size, size, f"2025-01-0{i + 1}T00:00:00+00:00", tasks)
    custom = write_run(tmp_path / "runs" / "tiny", None, "2025-01-05T00:00:00+00:00",
                       {"lambada": task_block({"ppl": 78.5, "acc": 20.4, "acc_stopword_filter": 19.6}, LAMBADA_INFO,
                                              500, 5153, "lambada_test.jsonl")},
                       model_id="/models/tiny-lambada-with-a-long-folder-name")
    results = json.loads((custom / "results.json").read_text())
    results["model"]["n_params"] = 6_960_000  # sits at its own parameter count in the plots
    (custom / "results.json").write_text(json.dumps(results))
    out = tmp_path / "report"
    assert main(["compare", str(tmp_path / "runs"), "--out", str(out)]) == 0
    return out / "report.html"


def test_the_html_report_fits_a_1400_pixel_window_and_its_plots_load(report, tmp_path):
    assert CHROMIUM and CHROMEDRIVER, "headless Chromium is needed: apt-get install chromium chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    profile = tempfile.mkdtemp(prefix="chromium-profile-", dir=tmp_path)   # a new, empty profile
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.set_window_size(WIDTH, HEIGHT)
        driver.get(report.as_uri())
        width = driver.execute_script("return window.innerWidth")
        assert WIDTH - 40 <= width <= WIDTH
        tables = driver.execute_script(
            "return [...document.querySelectorAll('table')].map(t => {const r = t.getBoundingClientRect();"
            " return [t.rows[0].innerText.slice(0, 60), Math.round(r.left), Math.round(r.right)]})")
        assert len(tables) >= 8
        too_wide = [t for t in tables if t[1] < 0 or t[2] > width]
        assert not too_wide, f"tables wider than the {width}-px window: {too_wide}"
        assert driver.execute_script("return document.documentElement.scrollWidth") <= width  # no sideways scroll
        images = driver.execute_script(
            "return [...document.images].map(i => [i.alt, i.complete, i.naturalWidth, i.naturalHeight,"
            " Math.round(i.getBoundingClientRect().right)])")
        # lambada: ppl and acc (3 variants), ptb: ppl, cnn_dailymail: one per ROUGE score (4 settings each)
        assert len(images) == 2 + 1 + 4
        assert all(ok and w >= 400 and h >= 300 and right <= width for _, ok, w, h, right in images), images
        # each task's first plot sits beside its table, not above it
        beside = driver.execute_script(
            "const s = document.querySelector('.task'); const img = s.querySelector('img').getBoundingClientRect();"
            " const t = s.querySelector('table').getBoundingClientRect(); return [img.right, t.left, img.top, t.top]")
        assert beside[0] <= beside[1] and abs(beside[2] - beside[3]) < 60
        text = driver.find_element("tag name", "body").text
        assert "Headline: the paper's numbers" in text and "closest of 2" in text
        assert "tiny-lambada-with-a-long-folder-name" in text
        shot = os.environ.get("GPT2EVAL_REPORT_SCREENSHOT")  # set it to look at the page yourself
        if shot:
            height = driver.execute_script("return document.documentElement.scrollHeight")
            driver.set_window_size(WIDTH, min(height + 120, 16000))
            driver.save_screenshot(shot)
    finally:
        driver.quit()
