"""Render report blocks as one self-contained HTML page or as Markdown.

The HTML embeds every plot as a base64 PNG ``data:`` URI and carries its own CSS: no
external URL, font or script, so it reads the same offline. The Markdown refers to the
same PNGs beside it under ``plots/``.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from quantfid.report.blocks import Block, Bullets, Heading, Image, Note, Para, Table

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 72rem;
       margin: 2rem auto; padding: 0 1rem; color: #1d1d1f; line-height: 1.45; }
h1 { font-size: 1.7rem; margin-bottom: .2rem; }
h2 { font-size: 1.3rem; margin-top: 2.2rem; border-bottom: 1px solid #ddd; padding-bottom: .2rem; }
h3 { font-size: 1.05rem; margin-top: 1.4rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .6rem 0 1.2rem; display: block;
        overflow-x: auto; }
th, td { border: 1px solid #d8d8d8; padding: .2rem .45rem; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; position: sticky; top: 0; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; font-style: italic; padding-bottom: .3rem; }
figure { margin: 1rem 0 1.6rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .88rem; color: #444; }
.verdict { font-size: 1.08rem; background: #f5f8ff; border-left: 4px solid #3b6fd8;
           padding: .6rem .9rem; }
.note { background: #fff8e6; border-left: 4px solid #d89a3b; padding: .5rem .9rem; }
"""


def _html_block(b: Block) -> str:
    e = html.escape
    if isinstance(b, Heading):
        lvl = min(max(b.level, 1), 4)
        anchor = "".join(c if c.isalnum() else "-" for c in b.text.lower()).strip("-")
        return f'<h{lvl} id="{e(anchor)}">{e(b.text)}</h{lvl}>'
    if isinstance(b, Para):
        return f'<p class="verdict"><strong>{e(b.text)}</strong></p>' if b.strong else f"<p>{e(b.text)}</p>"
    if isinstance(b, Bullets):
        return "<ul>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Note):
        return f'<p class="note">{e(b.text)}</p>'
    if isinstance(b, Table):
        cap = f"<caption>{e(b.caption)}</caption>" if b.caption else ""
        head = "".join(f"<th>{e(c)}</th>" for c in b.columns)
        body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
        return f"<table>{cap}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    if isinstance(b, Image):
        data = base64.b64encode(b.png).decode("ascii")
        size = f' width="{b.width}" height="{b.height}"' if b.width and b.height else ""
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(b.caption)}"'
                f' data-plot="{e(b.name)}"{size}><figcaption>{e(b.caption)}</figcaption></figure>')
    raise TypeError(f"unknown block {b!r}")


def to_html(title: str, blocks: Sequence[Block]) -> str:
    """One self-contained HTML document (inline CSS, base64 PNGs, no scripts)."""
    body = "\n".join(_html_block(b) for b in blocks)
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n"
            f"<title>{html.escape(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n"
            f"<h1>{html.escape(title)}</h1>\n{body}\n</body>\n</html>\n")


def _md_cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_block(b: Block, plots_dir: str) -> str:
    if isinstance(b, Heading):
        return "#" * min(max(b.level, 1), 4) + " " + b.text
    if isinstance(b, Para):
        return f"**{b.text}**" if b.strong else b.text
    if isinstance(b, Bullets):
        return "\n".join(f"- {i}" for i in b.items)
    if isinstance(b, Note):
        return "> " + b.text
    if isinstance(b, Table):
        lines = [f"*{b.caption}*", ""] if b.caption else []
        lines.append("| " + " | ".join(_md_cell(c) for c in b.columns) + " |")
        lines.append("|" + "|".join("---" for _ in b.columns) + "|")
        lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows]
        return "\n".join(lines)
    if isinstance(b, Image):
        return f"![{b.caption}]({plots_dir}/{b.name})\n\n*{b.caption}*"
    raise TypeError(f"unknown block {b!r}")


def to_markdown(title: str, blocks: Sequence[Block], plots_dir: str = "plots") -> str:
    """Markdown with the same content; images are ``plots_dir/<name>`` beside the file."""
    return f"# {title}\n\n" + "\n\n".join(_md_block(b, plots_dir) for b in blocks) + "\n"
