"""Our numbers beside the paper's: comparison rows and CSVs (compare.py), the compact tables
(summary.py), the report as a document (document.py), plots (plots.py) and the `compare` subcommand
(report.py)."""
