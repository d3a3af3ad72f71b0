"""Adapters behind the engine's ports: LLM backends and the answer checker."""
