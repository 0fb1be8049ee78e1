"""Corpus BLEU as sacrebleu computes it, in two settings, each with the signature that names it.

`corpus_bleu`: sacrebleu's defaults (the paper's translation experiment reports BLEU on WMT-14 and
does not name its tool; sacrebleu is the standard one): 13a tokenization, mixed case, exponential
smoothing, one reference per segment. `multibleu`: BLEU as multi-bleu.perl computes it on Moses-
tokenized text, the setting of the unsupervised-MT baselines the paper compares with (the GPT-3
paper, from the same group, used multi-bleu.perl on XLM/Moses-tokenized text for them). Both sides
go through XLM's Moses preprocessing with sacremoses (unicode punctuation replaced, punctuation
normalised, non-printing characters removed, tokenized without escaping), then sacrebleu scores the
tokens as they are (tokenize="none") without smoothing, as multi-bleu.perl does. The signature string
names these settings and the versions, and is recorded beside every score."""
from __future__ import annotations

# sacrebleu's arguments for multi-bleu.perl's computation: whitespace tokens, no smoothing (a corpus
# with no matching 4-gram scores 0); force: the input is tokenized on purpose, so no warning.
MULTIBLEU = {"tokenize": "none", "smooth_method": "none", "force": True}


def _bleu(**settings):
    from sacrebleu.metrics import BLEU  # local import: only the translation tasks and `score` need it
    return BLEU(**settings)


def _check(hypotheses: list[str], references: list[str]) -> None:
    if len(hypotheses) != len(references):
        raise ValueError(f"{len(hypotheses)} hypotheses but {len(references)} references")
    if not hypotheses:
        raise ValueError("no segments to score")


def corpus_bleu(hypotheses: list[str], references: list[str], **settings) -> tuple[float, str]:
    """(BLEU in points, 0-100; sacrebleu's signature). One reference per hypothesis, same order;
    `settings`: sacrebleu BLEU arguments other than its defaults."""
    _check(hypotheses, references)
    bleu = _bleu(**settings)
    score = bleu.corpus_score(list(hypotheses), [list(references)])
    return float(score.score), str(bleu.get_signature())


def bleu_spread(hypotheses: list[str], references: list[str], **settings):
    """The interval's spread for corpus BLEU: each segment's n-gram match counts, totals and
    lengths (sacrebleu's own sufficient statistics, as its paired bootstrap uses them), BLEU
    recomputed from their sums on every resample of the segments."""
    from ..api.uncertainty import summed
    bleu = _bleu(**settings)
    stats = bleu._extract_corpus_statistics(list(hypotheses), [list(references)])
    return summed(stats, lambda sums: bleu._compute_score_from_stats([int(round(x)) for x in sums]).score,
                  unit="segment", note="sacrebleu sufficient statistics per segment, resampled")


def moses_tokenized(texts: list[str], lang: str) -> list[str]:
    """XLM's Moses preprocessing of each text, by sacremoses: unicode punctuation replaced,
    punctuation normalised, non-printing characters removed, tokenized with no XML escaping."""
    from sacremoses import MosesPunctNormalizer, MosesTokenizer
    normalizer = MosesPunctNormalizer(lang=lang, pre_replace_unicode_punct=True, post_remove_control_chars=True)
    tokenizer = MosesTokenizer(lang=lang)
    return [tokenizer.tokenize(normalizer.normalize(t), escape=False, return_str=True) for t in texts]


def multibleu_signature(bleu_signature: str, lang: str) -> str:
    from importlib.metadata import version
    return f"{bleu_signature}|moses:sacremoses-{version('sacremoses')}-{lang}-normalized-no-escape"


def multibleu(hypotheses: list[str], references: list[str], lang: str) -> tuple[float, str]:
    """(BLEU as multi-bleu.perl computes it on Moses-tokenized text, in points; the signature).
    `lang`: the target language, for the Moses rules ("en", "fr")."""
    _check(hypotheses, references)
    score, signature = corpus_bleu(moses_tokenized(hypotheses, lang), moses_tokenized(references, lang), **MULTIBLEU)
    return score, multibleu_signature(signature, lang)


def multibleu_spread(hypotheses: list[str], references: list[str], lang: str):
    """`bleu_spread` of `multibleu`: the same statistics on the Moses-tokenized segments."""
    return bleu_spread(moses_tokenized(hypotheses, lang), moses_tokenized(references, lang), **MULTIBLEU)
