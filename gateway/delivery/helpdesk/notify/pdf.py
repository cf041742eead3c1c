"""The incident report as a PDF: Markdown → HTML → WeasyPrint, with CJK fonts first so zh-CN
text renders. WeasyPrint loads on first use only."""

from __future__ import annotations

from html import escape

__all__ = ["html_pdf", "report_html", "report_pdf"]

_CSS = """
@page { size: A4; margin: 18mm 16mm; @bottom-right { content: counter(page) " / " counter(pages); font-size: 8pt; } }
body { font-family: "WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC", sans-serif; font-size: 10pt;
       line-height: 1.45; color: #222; }
h1 { font-size: 15pt; border-bottom: 2px solid #1f5fa8; padding-bottom: 4px; }
h2 { font-size: 12pt; color: #1f5fa8; margin-top: 14px; }
table { border-collapse: collapse; width: 100%; } td, th { border: 1px solid #bbb; padding: 3px 6px; text-align: left; }
code, pre { font-family: inherit; white-space: pre-wrap; }
"""


def report_html(markdown_text: str, title: str) -> str:
    import markdown

    body = markdown.markdown(markdown_text, extensions=["tables", "sane_lists"])
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>")


def report_pdf(markdown_text: str, title: str) -> bytes:
    """PDF bytes of a Markdown report."""
    from weasyprint import HTML

    return bytes(HTML(string=report_html(markdown_text, title)).write_pdf())


def html_pdf(html: str) -> bytes:
    """PDF bytes of a self-contained HTML page (a service report with inline SVG charts)."""
    from weasyprint import HTML

    return bytes(HTML(string=html).write_pdf())
