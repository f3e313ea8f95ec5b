"""Tables as small self-contained HTML pages, for people and for the Snakemake report.

The report shows images, PDFs and HTML pages inline and offers anything else as a download,
so every table marked for the report also gets an HTML rendering beside its parquet file.
pandas' ``DataFrame.to_html`` writes the table; this adds a title, a caption and a style.
"""

from __future__ import annotations

import html
import os

import pandas as pd

from cxrgen import io

STYLE = """
body { font-family: sans-serif; font-size: 14px; margin: 1.5em; color: #222; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ccc; padding: 4px 8px; text-align: right; }
th { background: #f0f0f0; }
td:first-child, th:first-child { text-align: left; }
caption { caption-side: top; text-align: left; padding-bottom: 0.5em; color: #555; }
"""


def write_html_table(
    path: str | os.PathLike, table: pd.DataFrame, title: str, caption: str = "", digits: int = 3
) -> None:
    """``table`` as an HTML page with ``title`` (h1) and ``caption``; floats to ``digits``."""
    body = table.to_html(index=False, na_rep="", float_format=lambda v: f"{v:.{digits}f}", border=0)
    if caption:
        end = body.index(">", body.index("<table")) + 1
        body = f"{body[:end]}\n<caption>{html.escape(caption)}</caption>{body[end:]}"
    page = (
        f"<!DOCTYPE html>\n<html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
        f"<style>{STYLE}</style></head>\n<body><h1>{html.escape(title)}</h1>\n{body}\n"
        "</body></html>\n"
    )
    io.write_text(path, page)
