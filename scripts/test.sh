#!/usr/bin/env bash
# The test command (README, "Tests"; .ci/run runs it too): installs what the suite needs on a
# Debian machine, then runs it. Extra arguments go to pytest:
#
#     bash scripts/test.sh                              # the whole suite
#     bash scripts/test.sh tests/test_docs.py -x        # some of it
#
# 1. Headless Chromium and its driver, for the HTML report's browser test
#    (tests/test_report_browser.py), from Debian's packages when `chromium` or `chromedriver` is
#    missing (with sudo when not root). Without apt-get they must already be on PATH.
# 2. A virtual environment in .venv (made when missing), with the CPU build of torch installed
#    first (a bare `torch` requirement would download a multi-GB CUDA build), then gpt2eval with
#    its test extra. Repeated runs skip the installs while pyproject.toml is unchanged, so they
#    need no network.
# 3. pytest, offline (the tests read ../shared beside the checkout, never the network).
set -euo pipefail
cd "$(dirname "$0")/.."
TORCH=torch==2.13.0

say() { printf 'test.sh: %s\n' "$*" >&2; }

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  if command -v apt-get >/dev/null; then
    sudo=()
    if [ "$(id -u)" != 0 ]; then
      if command -v sudo >/dev/null; then sudo=(sudo); else say "not root and no sudo: cannot install chromium"; fi
    fi
    if [ "$(id -u)" = 0 ] || [ ${#sudo[@]} -gt 0 ]; then
      say "installing chromium and chromium-driver (apt-get) for the browser test"
      "${sudo[@]}" apt-get update -qq >/dev/null
      "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    fi
  else
    say "no apt-get: put chromium and chromedriver on PATH, or tests/test_report_browser.py fails"
  fi
fi

if [ ! -x .venv/bin/python ]; then
  say "creating .venv"
  python3 -m venv .venv
  .venv/bin/python -m pip install -qq --upgrade pip
fi
# What is installed, and from which pyproject.toml: the installs run again only when it changes.
stamp=.venv/.gpt2eval-test-installed
want="$TORCH $(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing $TORCH (CPU build) and gpt2eval[test] into .venv"
  .venv/bin/python -m pip install -qq "$TORCH"
  .venv/bin/python -m pip install -qq -e ".[test]"
  echo "$want" >"$stamp"
fi

export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec .venv/bin/python -m pytest -q "$@"
