#!/usr/bin/env bash
# Regenerate docs/example/ (the walkthrough report of README and docs/compare.md): four randomly
# initialised tiny GPT-2s, each standing in for one paper size through --reference-size, and the
# tiny trained model of ../shared/models/tiny-lambada, on the first 100 LAMBADA passages, merged by
# `compare`. The numbers are meaningless; the report shows the mechanics. About 2 minutes on 2 CPU
# cores. Usage: bash scripts/make_example.sh [WORK_DIR]   (default /tmp/gpt2eval-example; the
# report names the random models by their paths there)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$PWD
work=${1:-/tmp/gpt2eval-example}
tokenizer=$repo/../shared/tokenizers/gpt2 data=$repo/../shared/data
export HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false

shape() { case $1 in small) echo "2 64";; medium) echo "2 128";; large) echo "4 128";; xl) echo "4 256";; esac; }
for size in small medium large xl; do
  read -r layers width <<<"$(shape "$size")"
  python run_eval.py make-random-model "$work/random-$size" --tokenizer "$tokenizer" --n-layer "$layers" --n-embd "$width"
  python run_eval.py --model "$work/random-$size" --reference-size "$size" --tasks lambada --data-dir "$data" \
      --limit 100 --output "$work/runs/$size" --no-cache --no-progress
done
python run_eval.py --model ../shared/models/tiny-lambada --tasks lambada --data-dir "$data" \
    --limit 100 --output "$work/runs/tiny-lambada" --no-cache --no-progress
out=$repo/docs/example
# From inside the work folder, so that the report names the models by their short paths.
(cd "$work" && python "$repo/run_eval.py" compare runs --markdown "$out/report.md" --plot "$out/plots" \
    --csv "$out/comparison_tidy.csv" --table3-csv "$out/table3.csv" --html "$out/report.html")
