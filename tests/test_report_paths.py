"""`compare`'s output paths: each one is checked before anything is read or printed, and the outputs
are written all at once, so that a bad path or a full disk ends as one line (exit status 2) with no
traceback, nothing printed before it and nothing half-written."""
from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest

import gpt2eval.io
from gpt2eval.cli.main import main

from test_report import write_runs


@pytest.fixture()
def runs(tmp_path) -> Path:
    return write_runs(tmp_path)


def files_under(folder) -> set[str]:
    return {os.path.relpath(os.path.join(d, f), folder) for d, dirs, fs in os.walk(folder) for f in fs + dirs}


def refused(capsys, args: list[str]) -> str:
    """Run compare, expecting a refusal: exit 2, one line on stderr, nothing on stdout."""
    assert main(["compare", *args]) == 2
    out, err = capsys.readouterr()
    assert out == "", "compare printed before refusing"
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


@pytest.mark.parametrize("case", ["html_in_proc", "csv_is_a_folder", "plot_is_a_file", "markdown_below_a_file",
                                  "out_is_a_file", "out_file_is_a_folder", "table3_csv_in_proc", "same_path_twice"])
def test_an_output_path_that_cannot_be_written_is_refused_before_any_work(runs, tmp_path, capsys, case):
    (tmp_path / "a_file").write_text("keep me")
    (tmp_path / "a_folder").mkdir()
    (tmp_path / "out_dir" / "report.html").mkdir(parents=True)
    option, path, expected = {
        "html_in_proc": ("--html", "/proc/gpt2eval-none/report.html", "no file can be created in /proc"),
        "csv_is_a_folder": ("--csv", tmp_path / "a_folder", "a_folder is a folder, where a file goes"),
        "plot_is_a_file": ("--plot", tmp_path / "a_file", "a_file is a file, where a folder goes"),
        "markdown_below_a_file": ("--markdown", tmp_path / "a_file" / "sub" / "r.md", "is a file, so no folder can"),
        "out_is_a_file": ("--out", tmp_path / "a_file", "a_file is a file, where a folder goes"),
        "out_file_is_a_folder": ("--out", tmp_path / "out_dir", "report.html is a folder, where a file goes"),
        "table3_csv_in_proc": ("--table3-csv", "/proc/self/nope/t3.csv", "no file can be created in /proc"),
        "same_path_twice": ("--csv", tmp_path / "good.md", "--csv and --markdown both name"),
    }[case]
    before = files_under(tmp_path)
    # a writable output asked for beside the bad one must not be written either
    err = refused(capsys, [str(runs / "multi"), "--markdown", str(tmp_path / "good.md"), option, str(path)])
    assert option in err and expected in err, err
    assert files_under(tmp_path) == before and (tmp_path / "a_file").read_text() == "keep me"


def test_a_full_disk_is_one_line_naming_the_file_and_nothing_is_half_written(runs, tmp_path, capsys,
                                                                              monkeypatch):
    out = tmp_path / "report"
    out.mkdir()
    (out / "report.md").write_text("the previous report")
    written = []

    def disk_fills_up(f, data: bytes) -> None:  # the third file finds the disk full half-way
        if len(written) == 2:
            f.write(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        written.append(f.name)
        f.write(data)

    monkeypatch.setattr(gpt2eval.io, "_write_synced", disk_fills_up)
    assert main(["compare", str(runs / "multi"), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "no space left on device" in err and str(out) in err, err
    # the temporary files are gone, the plots folder made for them too, the old report is as it was
    assert files_under(out) == {"report.md"} and (out / "report.md").read_text() == "the previous report"
    assert len(written) == 2 and not any(os.path.exists(w) for w in written)
