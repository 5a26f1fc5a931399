"""Cue extractors. Each takes decoded media (or a transcript) and returns ``list[Cue]``; none knows of LLMs."""
