"""Small data factories for the shortened case-study runs (built under the working directory's runs/data)."""

from __future__ import annotations

from torch.utils.data import TensorDataset

from spiralprune.pipeline.casestudies.cache import DATA_DIR
from spiralprune.pipeline.casestudies.speech import build_keywords, load_feature_datasets
from spiralprune.pipeline.casestudies.text import build_fortunes, load_token_datasets

TINY_SEQ_LEN = 16
TINY_VOCAB = 400


def tiny_fortunes() -> tuple[TensorDataset, TensorDataset]:
    directory = build_fortunes(DATA_DIR / "tiny-fortunes", seq_len=TINY_SEQ_LEN, vocab_size=TINY_VOCAB, per_topic=30)
    return load_token_datasets(directory)


def tiny_keywords() -> tuple[TensorDataset, TensorDataset]:
    return load_feature_datasets(build_keywords(DATA_DIR / "tiny-keywords", train_per_class=4, val_per_class=2))
