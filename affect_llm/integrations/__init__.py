"""Integrations with other libraries (imported on their own: each needs its library installed)."""
