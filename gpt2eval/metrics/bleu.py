"""Corpus BLEU exactly as sacrebleu computes it (the paper's translation experiment reports BLEU on
WMT-14; sacrebleu is the standard implementation): its defaults, i.e. 13a tokenization,
mixed case, exponential smoothing, one reference per segment. The signature string names all of
these and the sacrebleu version, and is recorded beside every score."""
from __future__ import annotations


def _bleu():
    from sacrebleu.metrics import BLEU  # local import: only the translation tasks and `score` need it
    return BLEU()


def corpus_bleu(hypotheses: list[str], references: list[str]) -> tuple[float, str]:
    """(BLEU in points, 0-100; sacrebleu's signature). One reference per hypothesis, same order."""
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no segments to score")
    bleu = _bleu()
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(bleu.get_signature())


def bleu_spread(hypotheses: list[str], references: list[str]):
    """The interval's spread for corpus BLEU: each segment's n-gram match counts, totals and
    lengths (sacrebleu's own sufficient statistics, as its paired bootstrap uses them), BLEU
    recomputed from their sums on every resample of the segments."""
    from ..api.uncertainty import summed
    bleu = _bleu()
    stats = bleu._extract_corpus_statistics(list(hypotheses), [list(references)])
    return summed(stats, lambda sums: bleu._compute_score_from_stats([int(round(x)) for x in sums]).score,
                  unit="segment", note="sacrebleu sufficient statistics per segment, resampled")
