"""The one scoring engine: requests in, answers out. encode.py turns requests into token items and
cache keys; schedule.py batches them under a token budget and consults the cache; chains.py deals
the batches to the workers of a torchrun run; forward.py and heads.py score a batch; decode.py and
fused_decode.py generate; stats.py counts what was computed; engine.py composes them."""
