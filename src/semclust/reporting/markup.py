"""HTML building blocks of the report: escaping, fact tables, image figures and the page.

Every image is a base64 PNG data URI and the page's Content-Security-Policy forbids
fetching or running anything, so the one file opens offline and is safe to pass around.
"""

import html

import PIL.Image

from semclust.reporting.images import file_name, for_display, png_uri


def esc(text: object) -> str:
    """``text`` safe inside element content and quoted attribute values."""
    return html.escape(str(text), quote=True)


def table(rows: list[tuple[str, str]]) -> str:
    """A two-column table of (name, value) facts, both escaped."""
    cells = "".join(f"<tr><th>{esc(key)}</th><td>{esc(value)}</td></tr>" for key, value in rows)
    return f'<table class="facts">{cells}</table>'


def figure(image: PIL.Image.Image, caption: str, path: str) -> str:
    """An inlined image at display size; ``caption`` is HTML, ``path`` is escaped."""
    shown = for_display(image)
    return (
        f'<figure><img src="{png_uri(shown)}" width="{shown.width}" height="{shown.height}" '
        f'alt="{esc(file_name(path))}" title="{esc(path)}">'
        f"<figcaption>{caption}</figcaption></figure>"
    )


_CSS = """
body { font-family: system-ui, sans-serif; margin: 2rem auto; max-width: 1200px;
       padding: 0 1rem; color: #1a1a1a; background: #fff; line-height: 1.4; }
h1 { margin-bottom: 0.5rem; }
h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
table { border-collapse: collapse; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: left; }
table.facts th { background: #f4f4f4; font-weight: 600; }
table.confusion td { text-align: right; min-width: 2rem; }
table.k-criteria tr.decided { font-weight: 600; background: #eef5fb; }
table.errors td { font-family: monospace; word-break: break-all; }
.scroll { overflow-x: auto; }
.cluster { border: 1px solid #ddd; border-radius: 6px; padding: 0.5rem 1rem; margin: 1rem 0; }
.cluster.empty { background: #fafafa; color: #666; }
.cluster h3 { margin: 0.3rem 0; }
.facts { color: #444; }
.note { color: #8a5a00; }
.grid { display: flex; flex-wrap: wrap; gap: 0.5rem; margin: 0.5rem 0; }
figure { margin: 0; text-align: center; font-size: 0.75rem; max-width: 170px; }
figure img { image-rendering: pixelated; border: 1px solid #ccc; display: block;
             margin: 0 auto; }
figure.map { max-width: none; }
figure.map img { image-rendering: auto; max-width: 100%; height: auto; }
.path { color: #666; word-break: break-all; }
"""

# Nothing may be fetched or run: images are data URIs and styles are inline.
_CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'"


def page(title: str, body: str) -> str:
    """The whole HTML document around ``body`` (HTML), with styles and the CSP inline."""
    return (
        '<!DOCTYPE html>\n<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        f'<meta http-equiv="Content-Security-Policy" content="{_CSP}">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        f"<title>{esc(title)}</title>\n<style>{_CSS}</style>\n</head>\n<body>\n{body}\n"
        "</body>\n</html>\n"
    )
