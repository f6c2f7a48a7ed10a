"""Checks that an HTML report is self-contained: every plot inline, nothing fetched from anywhere."""

from __future__ import annotations

import base64
from html.parser import HTMLParser


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.references: list[tuple[str, str, str]] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in ("src", "href", "srcset", "data", "poster", "action"):
                self.references.append((tag, name, value or ""))


def inline_images(html: str) -> list[bytes]:
    """The decoded PNG of every ``<img>``; fails if anything refers to a URL or a file."""
    collector = _Collector()
    collector.feed(html)
    assert "script" not in collector.tags and "link" not in collector.tags and "iframe" not in collector.tags
    assert "http://" not in html and "https://" not in html
    images = []
    for tag, name, value in collector.references:
        assert value.startswith("data:image/png;base64,"), f"<{tag} {name}> refers to {value[:60]}"
        png = base64.b64decode(value.removeprefix("data:image/png;base64,"), validate=True)
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 2000
        images.append(png)
    return images
