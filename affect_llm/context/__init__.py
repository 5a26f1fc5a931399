"""Conversation context: the Broad Mamba network (issue 4 builds features, training and fusion on it)."""
