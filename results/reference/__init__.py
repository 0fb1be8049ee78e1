"""Reference tables (CSV); installed as package data gpt2eval.reference."""
