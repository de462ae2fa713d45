"""Extraction: scan an image folder, decode, the conv base, the extract job."""
