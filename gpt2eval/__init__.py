"""gpt2eval: reproduce GPT-2's zero-shot results."""
__version__ = "0.2.0"
