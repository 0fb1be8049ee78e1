"""Shared task machinery, one protocol per module: perplexity over streams, character-level bits,
multiple choice by log-likelihood, de-tokenizers, stop words, upstream downloads. Plugins in tasks/
build on these."""
