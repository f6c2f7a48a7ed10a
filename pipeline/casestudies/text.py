"""Fortune cookies by topic (Debian's ``fortunes``), tokenized for a Transformer text classifier.

Each topic file under ``/usr/share/games/fortunes`` holds quotations separated by lines of ``%``; the
file's name is the label. The tokenizer is this module's own: lower-cased words (with an inner
apostrophe) and single punctuation marks, a vocabulary of the most frequent training-split tokens
(ties broken alphabetically), id 0 for padding and 1 for unknown words, a fixed sequence length.
"""

from __future__ import annotations

import argparse
import json
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np
from torch.utils.data import TensorDataset

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies.cache import DATA_DIR, cached_build, load_split_arrays, require_source
from spiralprune.pipeline.casestudies.cli import run_builder

FORTUNES = Path("/usr/share/games/fortunes")
TOPICS = ("computers", "definitions", "politics", "science", "songs-poems", "startrek", "zippy")
TEXT_DIR = DATA_DIR / "fortunes"
SEQ_LEN = 64
VOCAB_SIZE = 5000
PAD, UNK = "<pad>", "<unk>"
_TOKEN = re.compile(r"[a-z0-9]+(?:'[a-z]+)?|[^\sa-z0-9]")


def read_fortunes(path: Path) -> list[str]:
    """The quotations of one fortune file (``%`` lines separate them), stripped, empty ones dropped."""
    text = path.read_text(encoding="utf-8", errors="replace")
    return [quote.strip() for quote in re.split(r"^%$", text, flags=re.MULTILINE) if quote.strip()]


def tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Tokenizer:
    vocabulary: tuple[str, ...]  # token id -> token; 0 is PAD, 1 is UNK
    seq_len: int

    @classmethod
    def fit(cls, texts: Iterable[str], size: int, seq_len: int, min_count: int = 2) -> Tokenizer:
        """The ``size - 2`` most frequent tokens seen at least ``min_count`` times, plus PAD and UNK."""
        counts = Counter(token for text in texts for token in tokenize(text))
        frequent = sorted((token for token, n in counts.items() if n >= min_count), key=lambda t: (-counts[t], t))
        return cls((PAD, UNK, *frequent[: size - 2]), seq_len)

    def encode(self, text: str) -> np.ndarray:
        """int64 ids, truncated or padded (with 0) to ``seq_len``."""
        ids = [self._ids.get(token, 1) for token in tokenize(text)[: self.seq_len]]
        return np.array(ids + [0] * (self.seq_len - len(ids)), dtype=np.int64)

    @cached_property
    def _ids(self) -> dict[str, int]:
        return {token: i for i, token in enumerate(self.vocabulary)}

    def save(self, path: Path) -> None:
        path.write_text(json.dumps({"seq_len": self.seq_len, "vocabulary": list(self.vocabulary)}, indent=0))

    @classmethod
    def load(cls, path: Path) -> Tokenizer:
        data = json.loads(Path(path).read_text())
        return cls(tuple(data["vocabulary"]), int(data["seq_len"]))


def build_fortunes(
    out: Path = TEXT_DIR,
    *,
    source: Path = FORTUNES,
    topics: Sequence[str] = TOPICS,
    seq_len: int = SEQ_LEN,
    vocab_size: int = VOCAB_SIZE,
    per_topic: int | None = None,
    val_fraction: float = 0.2,
    seed: int = 0,
) -> Path:
    """Write (or reuse) ``out/tokens.npz`` (train/val ids and labels) and ``out/tokenizer.json``.

    ``per_topic`` keeps only each file's first quotations. The split is stratified by topic and seeded;
    the vocabulary comes from the training split only.
    """
    from sklearn.model_selection import train_test_split

    require_source(source, "fortunes")
    missing = [topic for topic in topics if not (source / topic).is_file()]
    if missing:
        raise InputError(f"{source} has no fortune file for topic(s) {', '.join(missing)}")
    if len(topics) < 2:
        raise InputError("a text classifier needs at least two topics")

    def build(work: Path) -> dict:
        texts, labels = [], []
        for label, topic in enumerate(topics):
            quotes = read_fortunes(source / topic)[:per_topic]
            texts += quotes
            labels += [label] * len(quotes)
        train_x, val_x, train_y, val_y = train_test_split(
            texts, labels, test_size=val_fraction, random_state=seed, stratify=labels
        )
        tokenizer = Tokenizer.fit(train_x, vocab_size, seq_len)
        tokenizer.save(work / "tokenizer.json")
        np.savez(
            work / "tokens.npz",
            train_x=np.stack([tokenizer.encode(t) for t in train_x]),
            train_y=np.array(train_y, dtype=np.int64),
            val_x=np.stack([tokenizer.encode(t) for t in val_x]),
            val_y=np.array(val_y, dtype=np.int64),
        )
        lengths = np.array([len(tokenize(t)) for t in texts])
        return {
            "classes": list(topics),
            "train_per_class": np.bincount(train_y, minlength=len(topics)).tolist(),
            "val_per_class": np.bincount(val_y, minlength=len(topics)).tolist(),
            "vocabulary": len(tokenizer.vocabulary),
            "tokens_p50_p90": np.percentile(lengths, [50, 90]).tolist(),
            "truncated_fraction": float((lengths > seq_len).mean()),
        }

    key = {
        "source": str(source), "topics": list(topics), "seq_len": seq_len, "vocab_size": vocab_size,
        "per_topic": per_topic, "val_fraction": val_fraction, "seed": seed,
    }
    return cached_build(out, key, build)


def load_token_datasets(directory: Path) -> tuple[TensorDataset, TensorDataset]:
    return load_split_arrays(directory / "tokens.npz")


def fortunes_datasets() -> tuple[TensorDataset, TensorDataset]:
    """The ``data.source`` factory of examples/text: builds ``runs/data/fortunes`` on first use."""
    return load_token_datasets(build_fortunes())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m spiralprune.pipeline.casestudies.text", description=__doc__)
    parser.add_argument("--out", type=Path, default=TEXT_DIR, help=f"output folder (default {TEXT_DIR})")
    parser.add_argument("--source", type=Path, default=FORTUNES, help="folder of fortune files")
    parser.add_argument("--topics", nargs="+", default=list(TOPICS), help="fortune files used as classes")
    parser.add_argument("--seq-len", type=int, default=SEQ_LEN)
    parser.add_argument("--vocab-size", type=int, default=VOCAB_SIZE)
    return run_builder(
        parser,
        lambda a: build_fortunes(
            a.out, source=a.source, topics=a.topics, seq_len=a.seq_len, vocab_size=a.vocab_size
        ),
        argv,
    )


if __name__ == "__main__":
    raise SystemExit(main())
