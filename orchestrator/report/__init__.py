"""`orch report`: one self-contained HTML file (inline SVG, no external resources) and a Markdown summary."""
