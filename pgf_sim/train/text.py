"""Character-level language-modelling data: the shipped Shakespeare corpus or any local text.

Splits. Every document (a play, a file) is cut in order: the first ``1 - val - test`` of its
characters train, the next ``val_fraction`` validate, the last ``test_fraction`` test. All three
splits thus sample every document, and validation never overlaps test.

Tokenizer. ``char``: the sorted set of characters of the *training* split, plus one unknown id
(the last) for characters that occur only in validation/test or in a prompt. ``byte``: the
UTF-8 bytes, 256 ids, nothing unknown.

Batches. Training step ``t`` takes ``batch_size`` windows of ``block_size + 1`` characters at
offsets drawn from a generator seeded with (seed, t): a pure function of (seed, t), so resume is
bit-exact and DDP ranks split one global batch. Evaluation scores the first ``eval_chars``
characters of a split in fixed non-overlapping windows (each target scored once).
"""
from __future__ import annotations

import io
import lzma
import tarfile
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch

from pgf_sim.core import ConfigError
from pgf_sim.train.data_types import DATASETS, EVAL_BATCH, DataSpec
from pgf_sim.train.experiment import TextFileOptions, TextOptions

CORPUS_FILE = "shakespeare_plays.tar.xz"  # docs/data.md: provenance, licence, sha256


@dataclass(frozen=True)
class CharTokenizer:
    """``chars``: the vocabulary (id i = chars[i]); None for bytes. The unknown id is the last."""

    chars: str | None

    @classmethod
    def fit(cls, text: str, kind: str) -> "CharTokenizer":
        return cls(None) if kind == "byte" else cls("".join(sorted(set(text))))

    @property
    def vocab_size(self) -> int:
        return 256 if self.chars is None else len(self.chars) + 1

    def encode(self, text: str) -> torch.Tensor:
        """(len,) int64 ids."""
        if self.chars is None:
            return torch.tensor(list(text.encode("utf-8")), dtype=torch.long)
        # vectorised lookup: code points -> position in the sorted vocabulary, else unknown
        codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        vocab = np.frombuffer(self.chars.encode("utf-32-le"), dtype=np.uint32)
        pos = np.minimum(np.searchsorted(vocab, codes), len(vocab) - 1)
        ids = np.where(vocab[pos] == codes, pos, len(vocab))
        return torch.from_numpy(ids.astype(np.int64))

    def decode(self, ids) -> str:
        ids = [int(i) for i in ids]
        if self.chars is None:
            return bytes(ids).decode("utf-8", errors="replace")
        return "".join(self.chars[i] if i < len(self.chars) else "\ufffd" for i in ids)


@dataclass
class TextData:
    """Token streams of the three splits (1-D int64) and the tokenizer."""

    spec: DataSpec
    tokenizer: CharTokenizer
    train: torch.Tensor
    val: torch.Tensor
    test: torch.Tensor
    eval_chars: int | None

    @property
    def block_size(self) -> int:
        return self.spec.input_shape[0]

    @property
    def n_train(self) -> int:
        """Window start positions of the training stream (an "epoch" visits this many windows)."""
        return len(self.train) - self.block_size

    def train_batch(self, batch_size: int, seed: int, step: int, *, rank: int = 0, world: int = 1):
        """(x, y), each (batch_size / world, T): y is x shifted by one character."""
        t = self.block_size
        gen = torch.Generator().manual_seed(seed * 1_000_003 + step)
        starts = torch.randint(0, len(self.train) - t, (batch_size,), generator=gen)[rank::world]
        windows = torch.stack([self.train[s:s + t + 1] for s in starts.tolist()])  # (B, T+1)
        return windows[:, :-1], windows[:, 1:]

    def eval_batches(self, split: str):
        """Non-overlapping (x, y) windows over the first ``eval_chars`` characters of ``split``."""
        stream = self.val if split == "val" else self.test
        if self.eval_chars is not None:
            stream = stream[:self.eval_chars]
        t = self.block_size
        n = (len(stream) - 1) // t  # windows; each target character is scored once
        if n < 1:
            raise ConfigError(f"the {split} split has {len(stream)} characters, fewer than block_size + 1 ({t + 1})")
        x = stream[:n * t].view(n, t)
        y = stream[1:n * t + 1].view(n, t)
        for i in range(0, n, EVAL_BATCH):
            yield x[i:i + EVAL_BATCH], y[i:i + EVAL_BATCH]


def split_document(text: str, val_fraction: float, test_fraction: float) -> tuple[str, str, str]:
    """(train, val, test) pieces of one document, in reading order."""
    n = len(text)
    n_test = int(round(n * test_fraction))
    n_val = int(round(n * val_fraction))
    cut = n - n_test - n_val
    return text[:cut], text[cut:n - n_test], text[n - n_test:]


def build_text_data(documents: list[str], opts: TextOptions, source: str) -> TextData:
    """Split every document, fit the tokenizer on train, encode the three streams."""
    if not documents:
        raise ConfigError(f"{source}: no text")
    parts = [split_document(d, opts.val_fraction, opts.test_fraction) for d in documents]
    train, val, test = ("\n".join(p[i] for p in parts) for i in range(3))
    for name, piece in (("train", train), ("validation", val), ("test", test)):
        if len(piece) < opts.block_size + 2:
            raise ConfigError(f"{source}: the {name} split has {len(piece)} characters, fewer than block_size + 2 "
                              f"({opts.block_size + 2}); use more text or a smaller block_size")
    tok = CharTokenizer.fit(train, opts.tokenizer)
    spec = DataSpec("lm", (opts.block_size,), tok.vocab_size, vocab_size=tok.vocab_size)
    return TextData(spec, tok, tok.encode(train), tok.encode(val), tok.encode(test), opts.eval_chars)


def shakespeare_documents() -> list[str]:
    """The 42 plays, one string each, in file-name order (from the package's compressed archive)."""
    blob = resources.files("pgf_sim.train").joinpath("corpora", CORPUS_FILE).read_bytes()
    docs = []
    with tarfile.open(fileobj=io.BytesIO(lzma.decompress(blob)), mode="r:") as tar:
        for member in sorted(tar.getmembers(), key=lambda m: m.name):
            fh = tar.extractfile(member)  # regular files only; nothing is written to disk
            if fh is not None:
                docs.append(fh.read().decode("ascii"))
    return docs


def text_documents(opts: TextFileOptions) -> list[str]:
    root = Path(opts.path).expanduser()
    if root.is_file():
        files = [root]
    elif root.is_dir():
        files = sorted(root.rglob("*.txt"))
        if not files:
            raise ConfigError(f"data 'text': {root} holds no .txt files")
    else:
        raise ConfigError(f"data 'text': {root} is neither a file nor a folder")
    try:
        return [f.read_text(encoding=opts.encoding) for f in files]
    except UnicodeDecodeError as exc:
        raise ConfigError(f"data 'text': a file under {root} is not {opts.encoding} ({exc}); "
                          "set data.options.encoding") from None


DATASETS.add("shakespeare", (lambda o: build_text_data(shakespeare_documents(), o, "shakespeare").spec,
                             lambda o: build_text_data(shakespeare_documents(), o, "shakespeare")))
DATASETS.add("text", (lambda o: build_text_data(text_documents(o), o, f"data 'text' {o.path}").spec,
                      lambda o: build_text_data(text_documents(o), o, f"data 'text' {o.path}")))
