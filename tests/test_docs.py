"""The generated reference pages (docs/tasks.md, docs/cli.md's option tables) match the code."""
import importlib.util
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "make_docs.py"


def test_generated_pages_are_current():
    out = subprocess.run([sys.executable, str(SCRIPT), "--check"], cwd=REPO, capture_output=True, text=True,
                         timeout=120)
    assert out.returncode == 0, out.stdout + out.stderr


def test_a_stale_page_fails_the_check_in_one_line(tmp_path, monkeypatch, capsys):
    spec = importlib.util.spec_from_file_location("make_docs", SCRIPT)
    make_docs = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_docs)
    stale = tmp_path / "docs" / "tasks.md"
    stale.parent.mkdir()
    stale.write_text(make_docs.tasks_page().replace("lambada", "lambda", 1))
    monkeypatch.setattr(make_docs, "TASKS_PAGE", stale)
    monkeypatch.setattr(make_docs, "CLI_PAGE", tmp_path / "docs" / "cli.md")
    (tmp_path / "docs" / "cli.md").write_text(make_docs.cli_page((REPO / "docs" / "cli.md").read_text()))
    assert make_docs.main(["--check"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines == [f"{stale} is stale: run python scripts/make_docs.py and commit the result"]
    assert make_docs.main([]) == 0 and make_docs.main(["--check"]) == 0  # rewritten, then current
