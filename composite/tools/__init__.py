"""Everyday slide jobs built on the slide model: export, redact, quality report."""
