"""`lmforge app`'s module stands alone (the page answering through Gradio's client is in test_app.py, on the same
server as the browser test)."""

from __future__ import annotations

import subprocess
import sys


def test_ui_does_not_import_serve():
    code = "import sys, lmforge.ui.chat; print(any(m.startswith('lmforge.serve') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
