"""Headshot Studio: `python app.py` runs the app (a Hugging Face Space runs this file too)."""

from headshot.web.ui import build_demo, serve

# Built only (no thread, no model load): Spaces and `gradio app.py` look for `demo` here.
demo = build_demo()

if __name__ == "__main__":
    serve(demo)
