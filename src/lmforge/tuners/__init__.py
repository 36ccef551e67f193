"""Tuners: how a loaded model becomes trainable (LoRA through peft, or full)."""
