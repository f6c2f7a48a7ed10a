"""A self-contained HTML page: inline CSS, plots as ``data:`` URIs, nothing fetched from anywhere."""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence

_CSS = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1100px; color: #222; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; vertical-align: top; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.pass td:first-child, .pass { color: #17692f; } tr.fail td:first-child, .fail { color: #b3261e; }
tr.inconclusive td:first-child, .inconclusive { color: #8a5300; }
.verdict { font-size: 1.2em; font-weight: bold; }
img.plot { max-width: 100%; border: 1px solid #eee; margin: 0.5em 0; }
p.note { color: #555; font-size: 0.9em; }
"""


def esc(value: object) -> str:
    return html.escape(str(value), quote=True)


def html_table(
    headers: Sequence[str], rows: Iterable[Sequence[object]], *, numeric: Sequence[int] = (),
    row_classes: Sequence[str] | None = None,
) -> str:
    """A table; columns whose index is in ``numeric`` are right-aligned."""
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = []
    for i, row in enumerate(rows):
        css = f' class="{esc(row_classes[i])}"' if row_classes else ""
        cells = "".join(
            f'<td class="num">{esc(v)}</td>' if j in numeric else f"<td>{esc(v)}</td>" for j, v in enumerate(row)
        )
        body.append(f"<tr{css}>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_plot(data_uri: str, alt: str) -> str:
    return f'<img class="plot" alt="{esc(alt)}" src="{esc(data_uri)}">'


def html_page(title: str, sections: Iterable[str]) -> str:
    """``sections`` are HTML fragments placed in order under the title."""
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        f"<title>{esc(title)}</title><style>{_CSS}</style></head>\n<body>\n<h1>{esc(title)}</h1>\n"
        + "\n".join(sections)
        + "\n</body></html>\n"
    )
