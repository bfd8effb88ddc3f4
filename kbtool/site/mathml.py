"""LaTeX formulas to MathML at build time, so the site renders math with no script and no network.

``latex2mathml`` does the conversion; its output is then re-serialised through an allowlist
of MathML elements and attributes because the converter copies ``\\text{...}`` verbatim (a
formula containing ``<script>`` would otherwise reach the page as markup).
"""

from __future__ import annotations

import functools
from html import escape
from html.parser import HTMLParser

from latex2mathml.converter import convert

MATHML_ELEMENTS = frozenset(
    {
        "math", "mrow", "mi", "mn", "mo", "ms", "mtext", "mspace", "msub", "msup", "msubsup",
        "mfrac", "msqrt", "mroot", "mover", "munder", "munderover", "mstyle", "mpadded",
        "mphantom", "mtable", "mtr", "mtd", "menclose", "mmultiscripts", "mprescripts", "none",
        "semantics", "merror",
    }
)  # fmt: skip
MATHML_ATTRIBUTES = frozenset(
    {
        "xmlns", "display", "mathvariant", "stretchy", "fence", "form", "separator",
        "movablelimits", "largeop", "symmetric", "accent", "accentunder", "width", "height",
        "depth", "lspace", "rspace", "minsize", "maxsize", "displaystyle", "scriptlevel",
        "columnalign", "rowalign", "columnspacing", "rowspacing", "columnlines", "rowlines",
        "frame", "framespacing", "linethickness", "notation", "voffset", "mathsize",
    }
)  # fmt: skip
#: Characters latex2mathml emits as identifiers that LaTeX means as operators.
_IDENTIFIER_FIXES = {"~": "\u223c"}  # \sim comes out as a tilde identifier
#: Function names (\log, \exp, ...) that LaTeX follows with a thin space.
_FUNCTION_NAMES = frozenset(
    {"log", "ln", "exp", "sin", "cos", "tan", "max", "min", "arg", "det", "sup", "inf", "lim"}
)


class FormulaError(ValueError):
    """A formula that latex2mathml cannot parse."""


class _Sanitizer(HTMLParser):
    """Re-emit MathML keeping only allowlisted elements/attributes; everything else as text."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.out: list[str] = []
        self._stack: list[tuple[str, str]] = []  # (tag in the input, tag emitted)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=False)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self._start(tag, attrs, closed=True)

    def _start(self, tag: str, attrs: list[tuple[str, str | None]], *, closed: bool) -> None:
        if tag not in MATHML_ELEMENTS:
            self.out.append(escape(self.get_starttag_text() or f"<{tag}>"))
            return
        kept = "".join(
            f' {name}="{escape(value or "", quote=True)}"'
            for name, value in attrs
            if name in MATHML_ATTRIBUTES
        )
        if closed:
            self.out.append(f"<{tag}{kept} />")
        else:
            self.out.append(f"<{tag}{kept}>")
            self._stack.append((tag, tag))

    def handle_endtag(self, tag: str) -> None:
        if tag in MATHML_ELEMENTS and any(source == tag for source, _ in self._stack):
            while self._stack:
                source, emitted = self._stack.pop()
                self.out.append(f"</{emitted}>")
                if source == tag:
                    break
        else:
            self.out.append(escape(f"</{tag}>"))

    def handle_data(self, data: str) -> None:
        fresh_mi = (
            bool(self._stack)
            and self._stack[-1][1] == "mi"
            and bool(self.out)
            and self.out[-1].startswith("<mi")
        )
        if fresh_mi and data in _IDENTIFIER_FIXES:
            # <mi>~</mi>: emit the operator LaTeX meant.
            self.out[-1] = "<mo>"
            self._stack[-1] = ("mi", "mo")
            data = _IDENTIFIER_FIXES[data]
        elif fresh_mi and data in _FUNCTION_NAMES:
            # <mi>log</mi>: an upright operator with LaTeX's thin space after it.
            self.out[-1] = '<mo lspace="0.1667em" rspace="0.1667em">'
            self._stack[-1] = ("mi", "mo")
        self.out.append(escape(data, quote=False))

    def close_all(self) -> str:
        self.close()
        while self._stack:
            self.out.append(f"</{self._stack.pop()[1]}>")
        return "".join(self.out)


def sanitize_mathml(markup: str) -> str:
    """Keep only MathML elements and presentation attributes; escape every other tag as text."""
    parser = _Sanitizer()
    parser.feed(markup)
    return parser.close_all()


@functools.lru_cache(maxsize=512)
def latex_to_mathml(latex: str, *, display: bool = True) -> str:
    """Convert a LaTeX formula (no ``$`` delimiters) to sanitised MathML markup.

    Raises ``FormulaError`` when the formula cannot be parsed.
    """
    try:
        raw = convert(latex, display="block" if display else "inline")
    except Exception as exc:  # latex2mathml raises many exception types for bad input
        raise FormulaError(f"cannot convert formula {latex!r}: {exc!r}") from exc
    return sanitize_mathml(raw)
