"""Data parallelism under torchrun: the workers' process group and exchanges (group.py), and how a
run stops with one line when a worker fails or dies (watch.py)."""
