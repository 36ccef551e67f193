"""lmforge: fine-tune, align, run, export and serve LLMs with ms-swift-compatible flags."""

__version__ = "0.1.0"
