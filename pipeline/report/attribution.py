"""Where the time goes, as tables: a model's explanation (``spiral profile --explain``) and a change's
attribution to layers (``spiral compare``), from ``spiral.deploy.layer_profile``'s numbers."""

from __future__ import annotations

from typing import Any

# Rows shown in a terminal or a pull-request comment; the JSON keeps every layer.
TOP = 12
EXPLAIN_HEADERS = ("layer", "operator", "kind", "ms", "share", "interval", "MACs")
OP_HEADERS = ("operator", "kind", "layers", "ms", "share", "interval")
CHANGE_HEADERS = ("layer", "operator", "status", "base ms", "new ms", "change ms", "interval", "ratio",
                  "of the change")


def _pct(value: float | None) -> str:
    return "" if value is None else f"{100 * value:.1f}%"


def _macs(macs: int | None) -> str:
    return "" if not macs else f"{macs / 1e6:,.1f}M"


def explain_rows(explanation: dict[str, Any], top: int = TOP) -> list[list[str]]:
    rows = []
    for r in explanation["layers"][:top]:
        name = r["name"] + (" (fused)" if r["fused"] and r["name"] not in r["fuses"] else "")
        rows.append([name, r["op_type"], r["kind"], f"{r['ms']:.3f}", _pct(r["share"]),
                     f"{_pct(r['share_low'])} .. {_pct(r['share_high'])}", _macs(r["macs"])])
    return rows


def op_rows(explanation: dict[str, Any]) -> list[list[str]]:
    return [[r["op_type"], r["kind"], str(r["layers"]), f"{r['ms']:.3f}", _pct(r["share"]),
             f"{_pct(r['share_low'])} .. {_pct(r['share_high'])}"] for r in explanation["op_types"]]


def explain_summary(explanation: dict[str, Any]) -> str:
    c = explanation["coverage"]
    return (f"{explanation['source']} per-layer profile over {explanation['rounds']} rounds: the layers sum to "
            f"{_pct(c['value'])} of the end-to-end median {explanation['end_to_end_ms']:.3f} ms "
            f"({explanation['confidence']:.0%} CI {_pct(c['low'])} .. {_pct(c['high'])})")


def change_rows(attribution: dict[str, Any], top: int = TOP) -> list[list[str]]:
    rows = []
    for r in attribution["layers"][:top]:
        rows.append([r["name"], r["op_type"], r["status"], f"{r['base_ms']:.3f}", f"{r['new_ms']:.3f}",
                     f"{r['delta_ms']:+.3f}", f"{r['delta_low']:+.3f} .. {r['delta_high']:+.3f}",
                     "" if r["ratio"] is None else f"{r['ratio']:.2f}x", _pct(r["share_of_change"])])
    return rows


def change_summary(attribution: dict[str, Any]) -> str:
    change, layers = attribution["change_ms"], attribution["layers"]
    top = layers[0] if layers else None
    text = (f"end-to-end change {change['value']:+.3f} ms ({attribution['confidence']:.0%} CI "
            f"{change['low']:+.3f} .. {change['high']:+.3f}) over {attribution['rounds']} rounds")
    if top is not None:
        text += f"; the largest contributor is {top['name']} ({top['status']}, {top['delta_ms']:+.3f} ms)"
    return text
