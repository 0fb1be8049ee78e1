"""A plain (non-editable) `pip install .` must carry the built-in plugins and the paper's numbers."""
import os
import subprocess
import sys
import zipfile

from conftest import REPO


def test_wheel_contains_tasks_and_references_and_they_load(tmp_path):
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
                    str(REPO), "-w", str(tmp_path)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("gpt2eval-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {"gpt2eval/tasks/lambada.py", "gpt2eval/tasks/ptb.py", "gpt2eval/reference/gpt2_paper.csv",
            "run_eval.py"} <= set(names)
    site = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(site)
    probe = ("import gpt2eval, gpt2eval.paths as p, gpt2eval.api.plugins as plugins, gpt2eval.reporting.compare as c;"
             "assert gpt2eval.__file__.startswith(%r), gpt2eval.__file__;"
             "print(sorted(plugins.discover()), len([r for r in c.load_references() if r['task'] == 'lambada']))") % str(site)
    out = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PYTHONPATH": str(site)})
    assert out.returncode == 0, out.stderr
    assert all(f"'{name}'" in out.stdout for name in ("lambada", "ptb", "wikitext103", "wikitext2"))
