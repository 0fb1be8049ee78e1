"""The persistent result cache (store.py), its keys' digests of models and code (fingerprint.py), and
the `cache` subcommand (admin.py)."""
