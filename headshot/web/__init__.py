"""The web app: the Gradio page and its API.

``files`` serves and checks a caller's own files (sessions by browser tab or MCP client, links, uploads),
``endpoints`` is the API and MCP surface (plain typed functions over the flows), ``cards`` draws the
selfie cards, ``callbacks`` holds the page's own callbacks (notices, what a click shows), ``layout`` lays
out the page's parts (one builder each, returning their components) and ``ui`` builds the page from them
and wires the events. This layer may import the basics, faces and the flows; it reaches the GPU only
through the flows (no ``headshot.gpu`` import here). Nothing imports it but ``app.py``. Only this layer
imports gradio.
"""
