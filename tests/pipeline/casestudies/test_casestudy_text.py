"""Fortune cookies by topic (Debian's fortunes) and the case study's own tokenizer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from spiralprune.core.errors import InputError
from spiralprune.pipeline.casestudies import text
from spiralprune.pipeline.casestudies.cache import read_manifest
from spiralprune.pipeline.casestudies.text import Tokenizer, build_fortunes, load_token_datasets, read_fortunes, tokenize
from tests.pipeline.casestudies.debian import needs_fortunes

TOPICS = ("startrek", "zippy", "definitions")


def test_read_fortunes_splits_on_percent_lines(tmp_path: Path) -> None:
    path = tmp_path / "topic"
    path.write_text("First one,\n  two lines.\n%\nSecond 100% sure.\n%\n\n%\nThird\n%\n")
    assert read_fortunes(path) == ["First one,\n  two lines.", "Second 100% sure.", "Third"]


def test_tokenizer_vocabulary_encoding_and_round_trip(tmp_path: Path) -> None:
    assert tokenize("Don't PANIC, it's 42!") == ["don't", "panic", ",", "it's", "42", "!"]
    tokenizer = Tokenizer.fit(["b a a c", "a b d", "c b"], size=5, seq_len=4)
    # 'a' and 'b' are seen 3 times, 'c' twice, 'd' once (below min_count): ties sorted alphabetically
    assert tokenizer.vocabulary == ("<pad>", "<unk>", "a", "b", "c")
    np.testing.assert_array_equal(tokenizer.encode("c d a"), [4, 1, 2, 0])
    np.testing.assert_array_equal(tokenizer.encode("a a a a a a"), [2, 2, 2, 2])
    assert tokenizer.encode("").dtype == np.int64
    tokenizer.save(tmp_path / "tokenizer.json")
    assert Tokenizer.load(tmp_path / "tokenizer.json") == tokenizer


@pytest.mark.slow
@needs_fortunes
def test_build_is_deterministic_stratified_and_cached(tmp_path: Path) -> None:
    first = build_fortunes(tmp_path / "a", topics=TOPICS, seq_len=16, vocab_size=300, per_topic=40)
    second = build_fortunes(tmp_path / "b", topics=TOPICS, seq_len=16, vocab_size=300, per_topic=40)
    assert (first / "tokens.npz").read_bytes() == (second / "tokens.npz").read_bytes()
    manifest = read_manifest(first)
    assert manifest["classes"] == list(TOPICS)
    assert manifest["train_per_class"] == [32, 32, 32] and manifest["val_per_class"] == [8, 8, 8]
    train, val = load_token_datasets(first)
    tokens, label = train[0]
    assert tokens.dtype == torch.int64 and tuple(tokens.shape) == (16,) and int(tokens.max()) < 300
    assert (len(train), len(val)) == (96, 24) and 0 <= int(label) < 3
    stamp = (first / "tokens.npz").stat().st_mtime_ns
    build_fortunes(tmp_path / "a", topics=TOPICS, seq_len=16, vocab_size=300, per_topic=40)
    assert (first / "tokens.npz").stat().st_mtime_ns == stamp


def test_missing_package_or_topic_is_one_clear_error(tmp_path: Path, capsys) -> None:
    with pytest.raises(InputError, match="install Debian's fortunes"):
        build_fortunes(tmp_path / "out", source=tmp_path / "no-fortunes")
    (tmp_path / "fortunes").mkdir()
    (tmp_path / "fortunes" / "zippy").write_text("Yow!\n%\n")
    with pytest.raises(InputError, match="no fortune file for topic"):
        build_fortunes(tmp_path / "out", source=tmp_path / "fortunes", topics=("zippy", "startrek"))
    assert text.main(["--out", str(tmp_path / "out"), "--source", str(tmp_path / "no-fortunes")]) == 2
    assert "install Debian's fortunes" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
