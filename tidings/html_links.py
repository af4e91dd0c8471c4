"""Rewrite the `href` of the `<a>` tags of an HTML document, and nothing else.

A regex over HTML cannot tell `<a href>` from `<img src>`, a URL in a `style`, a comment or a
`<script>`; the standard library's tokenizer (`html.parser`) can, and it is already there. The
parser finds each `<a>` start tag (any case, attributes in any order, quoted either way or not
at all); the tag's own text is then re-parsed with the parser's attribute pattern so that only
the `href` value is replaced, in place, and everything else in the document is kept byte for
byte. An `<a>` carrying the attribute `data-tidings-untracked` is not rewritten, and the
attribute is removed from the output.
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from html.parser import HTMLParser, attrfind_tolerant, tagfind_tolerant  # type: ignore[attr-defined]

# The attribute a template author puts on an <a> to keep its link as written.
UNTRACKED_ATTRIBUTE = "data-tidings-untracked"

# Given an href's value (entities decoded), the new value, or None to keep it as it is.
Rewrite = Callable[[str], "str | None"]


class _AnchorFinder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.anchors: list[tuple[tuple[int, int], str]] = []  # (line, column), raw start tag

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            raw = self.get_starttag_text()
            if raw is not None:
                self.anchors.append((self.getpos(), raw))


def _rewrite_tag(raw: str, rewrite: Rewrite) -> str:
    """One `<a ...>` start tag with its first href rewritten and the untracked mark dropped."""
    match = tagfind_tolerant.match(raw, 1)
    if match is None:
        return raw
    # (start, end, name, raw value or None, where the raw value starts)
    attributes: list[tuple[int, int, str, str | None, int]] = []
    k = match.end()
    while k < len(raw):
        m = attrfind_tolerant.match(raw, k)
        if not m or m.end() == k:
            break
        name, rest, value = m.group(1, 2, 3)
        attributes.append((m.start(), m.end(), name.lower(), value if rest else None, m.start(3)))
        k = m.end()
    untracked = any(a[2] == UNTRACKED_ATTRIBUTE for a in attributes)
    out: list[str] = []
    last = 0
    href_done = False
    for start, end, name, value, value_start in attributes:
        if name == UNTRACKED_ATTRIBUTE:
            out.append(raw[last:start])
            last = end
        elif name == "href" and not href_done and value is not None:
            href_done = True
            if untracked:
                continue
            quoted = value[:1] in ("'", '"') and value[:1] == value[-1:] and len(value) > 1
            url = html.unescape(value[1:-1] if quoted else value)
            new = rewrite(url)
            if new is None:
                continue
            out.append(raw[last:value_start])
            out.append('"' + html.escape(new, quote=True) + '"')
            last = value_start + len(value)
    out.append(raw[last:])
    return "".join(out)


def rewrite_anchor_hrefs(document: str, rewrite: Rewrite) -> str:
    """`document` with the href of each `<a>` passed through `rewrite` (see the module doc)."""
    finder = _AnchorFinder()
    finder.feed(document)
    finder.close()
    if not finder.anchors:
        return document
    # The parser counts lines by "\n" and columns from the line's start.
    line_starts = [0] + [m.end() for m in re.finditer("\n", document)]
    out: list[str] = []
    last = 0
    for (line, column), raw in finder.anchors:
        offset = line_starts[line - 1] + column
        if document[offset : offset + len(raw)] != raw:
            continue  # cannot happen with the parser's own positions; never corrupt the text
        out.append(document[last:offset])
        out.append(_rewrite_tag(raw, rewrite))
        last = offset + len(raw)
    out.append(document[last:])
    return "".join(out)
