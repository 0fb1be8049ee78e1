"""enwik8 test: bits per byte on the last 5,000,000 bytes of the first 10^8 bytes of Wikipedia XML.

Data: Matt Mahoney's `enwik8.zip` (member `enwik8`), from --data-dir `enwik8/enwik8.zip`, the download
cache, or http://mattmahoney.net/dc/enwik8.zip; size and SHA-256 as pinned by huggingface/datasets
(datasets/enwik8/dataset_infos.json), SHA-1 as pinned by gluon-nlp
(scripts/datasets/url_checksums/language_model.txt). The hub copy is a loading script that no longer
runs under datasets 4, so there is no hub fallback.

Protocol: no de-tokenization (the raw XML and wiki markup are what the test set is). The 5M bytes are
split into lines (an example is a line, its newline included) and decoded as UTF-8; a byte that is
not valid UTF-8 (the split may cut a character at its first bytes) becomes U+FFFD and still counts
as its original bytes. bits_per_byte = total NLL / ln 2 / 5,000,000 original bytes; the stream is
scored as in `gpt2eval.protocols.char_level`.
"""
from gpt2eval.protocols.char_level import CharLevelTask
from gpt2eval.protocols.download import Remote


class Enwik8(CharLevelTask):
    name = "enwik8"
    description = "enwik8 test (last 5M bytes), bits per byte"
    member = "enwik8"
    metric = "bits_per_byte"
    remote = Remote("enwik8/enwik8.zip", "http://mattmahoney.net/dc/enwik8.zip", 36_445_475,
                    sha1="d856b1ccd937c51aeb9c342e47666fb8c38e7e72",
                    source="huggingface/datasets enwik8 dataset_infos.json (size, SHA-256); gluon-nlp (SHA-1)")
    base_protocol = {"split": "last 5,000,000 bytes of enwik8", "detokenizer": "none (raw XML)",
                     "decoding": "UTF-8, invalid bytes as U+FFFD (still counted)", "examples": "lines of the split",
                     "normalisation": "total NLL in bits / 5,000,000 original bytes"}

    def pieces(self, split):
        return [(line.decode("utf-8", errors="replace"), len(line)) for line in split.splitlines(keepends=True)]
