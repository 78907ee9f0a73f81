"""Auto-instrumentors (``BaseInstrumentor`` subclasses) for LLM clients and tool registries."""
