"""A user's trained weights: what training frameworks save, loaded into the module a spec builds."""

from __future__ import annotations

import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from spiralprune.core.errors import InputError
from spiralprune.pipeline.models import build_model
from spiralprune.pipeline.source import load_source
from spiralprune.pipeline.weights import load_weights

SPEC = "spiralprune.pipeline.zoo.digits_resnet:digits_resnet?width=4&blocks=[1,1,1,1]"


@pytest.fixture
def trained() -> torch.nn.Module:
    torch.manual_seed(7)
    return build_model(SPEC)


def _equal(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values(), strict=True))


@pytest.mark.parametrize(
    "wrap",
    [
        lambda state: state,                                                   # torch.save(model.state_dict())
        lambda state: {f"module.{k}": v for k, v in state.items()},            # DistributedDataParallel
        lambda state: {"state_dict": {f"model.{k}": v for k, v in state.items()}, "epoch": 3},  # Lightning
        lambda state: {"model": {f"_orig_mod.{k}": v for k, v in state.items()}, "optimizer": {}},  # compiled
    ],
    ids=["plain", "ddp-module-prefix", "lightning", "compiled-in-checkpoint"],
)
def test_state_dicts_saved_by_torch_save_load(trained, wrap, tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    torch.save(wrap(trained.state_dict()), path)
    assert _equal(load_source(SPEC, path).module, trained)


def test_safetensors_load(trained, tmp_path: Path) -> None:
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    assert _equal(load_weights(build_model(SPEC), path, SPEC), trained)


def test_missing_and_unexpected_keys_are_named_in_one_line(trained, tmp_path: Path) -> None:
    state = trained.state_dict()
    state["extra.weight"] = torch.zeros(1)
    del state["fc.bias"]
    torch.save(state, tmp_path / "w.pth")
    with pytest.raises(InputError) as error:
        load_source(SPEC, tmp_path / "w.pth")
    assert "1 missing key (fc.bias); 1 unexpected key (extra.weight)" in str(error.value)
    assert "\n" not in str(error.value)


def test_shapes_that_differ_are_named(trained, tmp_path: Path) -> None:
    torch.save(trained.state_dict(), tmp_path / "w.pth")
    with pytest.raises(InputError, match=r"shapes differ \(file vs model: stem.0.weight \[4, 1, 3, 3\] vs \[8, 1, 3, 3\]"):
        load_source(SPEC.replace("width=4", "width=8"), tmp_path / "w.pth")


class Payload:
    def __reduce__(self):
        return (print, ("unpickled code ran",))


def test_pickled_code_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "evil.pt"
    path.write_bytes(pickle.dumps({"fc.weight": Payload()}))
    with pytest.raises(InputError, match="weights_only=True, which refuses pickled code"):
        load_source(SPEC, path)
    assert "unpickled code ran" not in capsys.readouterr().out


@pytest.mark.parametrize("content", [b"", b"not a checkpoint"], ids=["empty", "garbage"])
def test_unreadable_files_are_one_line(content: bytes, tmp_path: Path) -> None:
    path = tmp_path / "w.pt"
    path.write_bytes(content)
    with pytest.raises(InputError, match="is not a safetensors file or a state dict"):
        load_source(SPEC, path)


def test_weights_for_a_checkpoint_are_refused(trained, tmp_path: Path) -> None:
    from spiralprune.pipeline.checkpoint import save_checkpoint

    save_checkpoint(tmp_path / "ckpt", base_spec=SPEC, plans=[], model=trained, input_shape=[1, 1, 8, 8])
    with pytest.raises(InputError, match="weights apply to a model spec"):
        load_source(str(tmp_path / "ckpt"), tmp_path / "w.pt")
