"""The web app: the Gradio page and its API.

``files`` serves and checks a caller's own files (sessions by browser tab or MCP client, links, uploads),
``endpoints`` is the API and MCP surface (plain typed functions over the flows), ``callbacks`` holds the
page's own callbacks (cards, notices, what a click shows), and ``ui`` builds the page, one builder per step.
This layer may import every layer below it (basics, faces, gpu, flows); nothing imports it but ``app.py``.
Only this layer imports gradio.
"""
