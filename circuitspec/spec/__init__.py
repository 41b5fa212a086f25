"""The hypothesis file: its pydantic models, where each value sits in the YAML, its semantic checks, loading."""
