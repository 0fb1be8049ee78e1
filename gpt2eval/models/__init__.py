"""Loading the models the engine scores (hub ids and model folders, nanoGPT and llm.c checkpoint
files, model objects from a training loop), their tokenizers, and the GPT-2 sizes with the paper's
numbers about them."""
