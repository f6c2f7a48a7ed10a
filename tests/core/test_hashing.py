import hashlib
import json

from spiralprune.core.hashing import json_digest, sha256_file


def test_sha256_file_reads_in_blocks_what_hashlib_digests_whole(tmp_path):
    p = tmp_path / "f.bin"
    p.write_bytes(b"spiral" * 300_000)  # more than one 1 MiB block
    assert sha256_file(p) == hashlib.sha256(b"spiral" * 300_000).hexdigest()


def test_json_digest_ignores_key_order_and_keeps_the_format_of_older_keys():
    a = {"onnx": "ab12", "build": ["trtexec", "--fp16"], "gpu": {"name": "Orin", "driver": "540"}}
    b = {"gpu": {"driver": "540", "name": "Orin"}, "build": ["trtexec", "--fp16"], "onnx": "ab12"}
    assert json_digest(a, 24) == json_digest(b, 24) != json_digest({**a, "onnx": "ab13"}, 24)
    # the format cache file names were written in: the prefix of the sha256 of json.dumps(..., sort_keys=True)
    assert json_digest(a, 16) == hashlib.sha256(json.dumps(a, sort_keys=True).encode()).hexdigest()[:16]
