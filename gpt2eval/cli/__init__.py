"""The command line (main.py) and its subcommands: plan (plan.py) and score (score.py). A run itself is
gpt2eval/runner.py."""
