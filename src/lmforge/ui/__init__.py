"""Web pages: the `lmforge app` chat page (Gradio)."""
