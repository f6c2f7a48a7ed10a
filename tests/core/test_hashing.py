import hashlib

from spiralprune.core.hashing import sha256_file


def test_sha256_file_reads_in_blocks_what_hashlib_digests_whole(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"spiral" * 300_000)  # more than one 1 MiB block
    assert sha256_file(p) == hashlib.sha256(b"spiral" * 300_000).hexdigest()
