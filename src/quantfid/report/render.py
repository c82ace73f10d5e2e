"""Render report blocks as one self-contained HTML page or as Markdown.

The HTML embeds every plot as a base64 PNG ``data:`` URI and carries its own CSS: no
external URL, font or script, so it reads the same offline; collapsed sections are
``<details>``; CSV files beside the report are linked relatively. The Markdown refers to the
same PNGs and CSVs beside it, says the same things in the same order, shows a collapsed
section as an ordinary section and a long table's first ``md_rows`` rows.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence

from quantfid.report.blocks import Block, Bullets, Details, Heading, Image, Note, Para, Table

_CSS = """
body { font-family: system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; max-width: 76rem;
       margin: .8rem auto; padding: 0 1rem; color: #1d1d1f; line-height: 1.4; }
h1 { font-size: 1.3rem; margin: .2rem 0 .5rem; }
h2 { font-size: 1.15rem; margin-top: 1.6rem; border-bottom: 1px solid #ddd; padding-bottom: .15rem; }
h3 { font-size: 1.0rem; margin-top: 1.2rem; }
table { border-collapse: collapse; font-size: .82rem; margin: .4rem 0 1rem; }
.scroll { overflow-x: auto; }
th, td { border: 1px solid #d8d8d8; padding: .18rem .45rem; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; }
td:first-child, th:first-child { text-align: left; }
p.caption { font-size: .8rem; color: #444; margin: .5rem 0 .2rem; }
figure { margin: .8rem 0 1.4rem; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: .86rem; color: #444; }
figcaption strong { color: #1d1d1f; }
.verdict { font-size: 1.05rem; background: #f5f8ff; border-left: 4px solid #3b6fd8;
           padding: .45rem .8rem; margin: .3rem 0 .4rem; }
ul.numbers { font-size: .9rem; margin: .3rem 0 .4rem; padding-left: 1.3rem; }
ul.numbers li { margin: .1rem 0; }
.note { background: #fff8e6; border-left: 4px solid #d89a3b; padding: .3rem .8rem; font-size: .86rem;
        margin: .25rem 0; }
details { margin: .4rem 0; }
details > summary { cursor: pointer; font-weight: 600; padding: .2rem 0; }
.csv { font-size: .8rem; margin-top: -.6rem; }
"""


def _anchor(text: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in text.lower()).strip("-")


def _html_table(b: Table) -> str:
    e = html.escape
    cap = f'<p class="caption">{e(b.caption)}</p>' if b.caption else ""
    head = "".join(f"<th>{e(c)}</th>" for c in b.columns)
    body = "".join("<tr>" + "".join(f"<td>{e(c)}</td>" for c in r) + "</tr>" for r in b.rows)
    tid = f' id="{e(b.id)}"' if b.id else ""
    out = (f'{cap}<div class="scroll"><table{tid}><thead><tr>{head}</tr></thead>'
           f"<tbody>{body}</tbody></table></div>")
    if b.csv:
        out += f'<p class="csv">All rows: <a href="{e(b.csv)}">{e(b.csv)}</a></p>'
    return out


def _html_block(b: Block) -> str:
    e = html.escape
    if isinstance(b, Heading):
        lvl = min(max(b.level, 1), 4)
        return f'<h{lvl} id="{e(_anchor(b.text))}">{e(b.text)}</h{lvl}>'
    if isinstance(b, Para):
        pid = f' id="{e(b.id)}"' if b.id else ""
        if b.strong:
            return f'<p class="verdict"{pid}><strong>{e(b.text)}</strong></p>'
        return f"<p{pid}>{e(b.text)}</p>"
    if isinstance(b, Bullets):
        attrs = f' id="{e(b.id)}" class="numbers"' if b.id else ""
        return f"<ul{attrs}>" + "".join(f"<li>{e(i)}</li>" for i in b.items) + "</ul>"
    if isinstance(b, Note):
        return f'<p class="note">{e(b.text)}</p>'
    if isinstance(b, Table):
        return _html_table(b)
    if isinstance(b, Image):
        data = base64.b64encode(b.png).decode("ascii")
        size = f' width="{b.width}" height="{b.height}"' if b.width and b.height else ""
        take = f"<strong>{e(b.takeaway)}</strong> " if b.takeaway else ""
        return (f'<figure><img src="data:image/png;base64,{data}" alt="{e(b.takeaway or b.caption)}"'
                f' data-plot="{e(b.name)}"{size}><figcaption>{take}{e(b.caption)}</figcaption></figure>')
    if isinstance(b, Details):
        inner = "\n".join(_html_block(x) for x in b.blocks)
        return (f'<details id="{e(_anchor(b.title))}"><summary>{e(b.title)}</summary>\n'
                f"{inner}\n</details>")
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


def _md_table(b: Table) -> str:
    lines = [f"*{b.caption}*", ""] if b.caption else []
    lines.append("| " + " | ".join(_md_cell(c) for c in b.columns) + " |")
    lines.append("|" + "|".join("---" for _ in b.columns) + "|")
    lines += ["| " + " | ".join(_md_cell(c) for c in r) + " |" for r in b.rows[:b.md_rows]]
    more = len(b.rows) - b.md_rows
    if more > 0:
        lines += ["", f"({more} more rows in [{b.csv}]({b.csv}))" if b.csv
                  else f"({more} more rows in summary.json)"]
    elif b.csv:
        lines += ["", f"All rows: [{b.csv}]({b.csv})"]
    return "\n".join(lines)


def _md_block(b: Block, plots_dir: str, level: int = 2) -> str:
    if isinstance(b, Heading):
        return "#" * min(max(b.level, 1), 4) + " " + b.text
    if isinstance(b, Para):
        return f"**{b.text}**" if b.strong else b.text
    if isinstance(b, Bullets):
        return "\n".join(f"- {i}" for i in b.items)
    if isinstance(b, Note):
        return "> " + b.text
    if isinstance(b, Table):
        return _md_table(b)
    if isinstance(b, Image):
        take = f"**{b.takeaway}** " if b.takeaway else ""
        return f"![{b.takeaway or b.caption}]({plots_dir}/{b.name})\n\n{take}*{b.caption}*"
    if isinstance(b, Details):
        head = "#" * min(level + 1, 4) + " " + b.title + " (collapsed in report.html)"
        return "\n\n".join([head, *(_md_block(x, plots_dir, level + 1) for x in b.blocks)])
    raise TypeError(f"unknown block {b!r}")


def to_markdown(title: str, blocks: Sequence[Block], plots_dir: str = "plots") -> str:
    """Markdown with the same content; images are ``plots_dir/<name>`` beside the file."""
    return f"# {title}\n\n" + "\n\n".join(_md_block(b, plots_dir) for b in blocks) + "\n"
