"""Scoring functions for the zero-shot generation tasks (no model code here)."""
