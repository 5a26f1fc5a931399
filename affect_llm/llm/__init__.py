"""The reasoning LLM: backends (transformers in-process) and the reasoner (label scoring + explanation)."""
