"""Headshot Studio: `python app.py` runs the app (a Hugging Face Space runs this file too)."""

from headshot.ui import build_demo, launch_kwargs

demo = build_demo()

if __name__ == "__main__":
    demo.launch(**launch_kwargs())
