"""Loading the models the engine scores (hub ids and local folders), their tokenizers, and the GPT-2
sizes with the paper's numbers about them."""
