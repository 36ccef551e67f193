"""Vision-language models: media in rows (media.py, parts.py), the family table (families.py), encoding with the
processor's token counts (encode.py), batches with pixels (collate.py), freezing (tuning.py)."""
