"""text8 test: bits per character on the last 5,000,000 characters of text8.

Data: Matt Mahoney's `text8.zip` (member `text8`: 10^8 characters of Wikipedia, lower-case a-z and
single spaces, one line without a newline), from --data-dir `text8/text8.zip`, the download cache,
or http://mattmahoney.net/dc/text8.zip; size as in TensorFlow's word2vec tutorial and gluon-nlp,
SHA-1 as pinned by gluon-nlp (scripts/datasets/url_checksums/language_model.txt); no SHA-256 is
published. The hub copy is a loading script that no longer runs under datasets 4: no hub fallback.

Protocol: no de-tokenization (there is nothing to undo: no punctuation, no case, numbers spelled
out; the split starts wherever character 95,000,000 falls, mid-word or not). The file is ASCII, so a
character is a byte. An example is a block of 10,000 characters (text8 has no lines); the blocks are
joined back into one stream. bits_per_char = total NLL / ln 2 / 5,000,000.
"""
from gpt2eval.protocols.char_level import CharLevelTask
from gpt2eval.protocols.download import Remote
from gpt2eval.errors import DataError

BLOCK = 10_000


class Text8(CharLevelTask):
    name = "text8"
    description = "text8 test (last 5M characters), bits per character"
    member = "text8"
    metric = "bits_per_char"
    remote = Remote("text8/text8.zip", "http://mattmahoney.net/dc/text8.zip", 31_344_016,
                    sha1="6c70299b93b7e1f927b42cd8f6ac1a31547c7a2e",
                    source="gluon-nlp scripts/datasets/url_checksums/language_model.txt (size, SHA-1)")
    base_protocol = {"split": "last 5,000,000 characters of text8", "detokenizer": "none (a-z and spaces only)",
                     "examples": f"blocks of {BLOCK:,} characters",
                     "normalisation": "total NLL in bits / 5,000,000 characters"}

    def pieces(self, split):
        bad = split.translate(None, b"abcdefghijklmnopqrstuvwxyz ")
        if bad:
            raise DataError(f"the test split has {len(bad):,} bytes other than a-z and space (first {bad[:1]!r} "
                            f"at byte {split.index(bad[:1])} of the split); re-download the upstream file")
        text = split.decode("ascii")
        return [(text[i:i + BLOCK], len(text[i:i + BLOCK])) for i in range(0, len(text), BLOCK)]
