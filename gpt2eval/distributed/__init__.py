"""Data parallelism under torchrun: which worker computes which batch, and how the answers reach rank
0."""
