"""Our numbers beside the paper's: comparison rows and a run's CSV (compare.py), the paper's table
layouts over several runs (tables.py), the compact tables (summary.py), the report as a document
(document.py), plots (plots.py) and the `compare` subcommand (report.py)."""
