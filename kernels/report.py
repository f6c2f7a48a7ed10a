"""``spiralprune profile --per-layer``: each layer's latency staircase across output channel counts."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console
from rich.table import Table

from spiralprune.kernels.layers import onnx_layers
from spiralprune.kernels.ops import LSTM, Attention, Conv, Linear, OpSignature
from spiralprune.kernels.table import LatencyTable


def staircase_counts(channels: int) -> list[int]:
    """``channels`` and, below it, multiples of a step: a multiple of 8 above 16 channels (about 8 counts)."""
    step = 8 * -(-channels // 64) if channels > 16 else max(1, channels // 4)
    return [channels] + [c for c in range(step * ((channels - 1) // step), 0, -step)]


def describe(op: OpSignature) -> str:
    if isinstance(op, Conv):
        kind = "dwconv" if op.depthwise else "conv"
        return (
            f"{kind} {op.kernel[0]}x{op.kernel[1]}/{op.stride[0]} {op.in_channels}→{op.out_channels} "
            f"@{op.height}x{op.width}" + (f" g{op.groups}" if op.groups > 1 and not op.depthwise else "")
        )
    if isinstance(op, Linear):
        return f"linear {op.in_features}→{op.out_features} ×{'x'.join(map(str, op.leading))}"
    if isinstance(op, Attention):
        return f"attention {op.heads} heads ×{op.head_dim} q{op.seq_len} kv{op.kv_len}"
    if isinstance(op, LSTM):
        return f"lstm {op.input_size}→{op.hidden_size} ×{op.seq_len} steps b{op.batch}"
    raise TypeError(f"unknown operator {op!r}")


def print_layer_tables(
    onnx_path: Path,
    backend: str = "ort-cpu",
    threads: int | None = None,
    *,
    precision: str = "fp32",
    batch: int = 1,
    cache_dir: Path | None = None,
    console: Console | None = None,
    options: dict | None = None,
) -> None:
    """Print, per prunable layer of ``onnx_path``, its latency now and at fewer output channels.

    Operators are timed alone on ``backend`` (cached in the latency table); a count that is slower
    than a smaller one is a step of the staircase to avoid when pruning. ``options`` are the
    backend's (a torch target's device and compile mode).
    """
    console = console or Console()
    table = LatencyTable(backend, threads=threads, precision=precision, cache_dir=cache_dir, options=options)
    layers = onnx_layers(Path(onnx_path), batch)
    view = Table(title=f"per-layer latency · {backend} · {table.fingerprint['threads']} threads · batch {batch}")
    view.add_column("layer")
    view.add_column("operator")
    view.add_column("ms", justify="right")
    view.add_column("ms at fewer output channels (heads, hidden units)")
    total = 0.0
    for layer in layers:
        current = layer.op.out_channels
        steps = table.staircase(layer.op, staircase_counts(current))
        now = steps[0][1]
        total += now
        cells = []
        for count, ms in steps[1:]:
            faster = min(m for c, m in steps if c >= count)  # what keeping more channels would cost at best
            mark = "[red]" if ms > faster * 1.02 else ""
            cells.append(f"{mark}{count}:{ms:.3f}{'[/]' if mark else ''}")
        view.add_row(layer.name, describe(layer.op), f"{now:.3f}", " ".join(cells))
    console.print(view)
    console.print(
        f"Σ operators {total:.3f} ms (timed alone; a whole model adds overhead and fusions) · "
        f"table {table.path} · red: slower than keeping more channels"
    )
