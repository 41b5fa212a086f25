"""The bridge: running the model's forward passes, and what they cost."""
