"""Reports of a study: the model-zoo comparison table (Markdown, CSV, LaTeX) and the HTML page."""
