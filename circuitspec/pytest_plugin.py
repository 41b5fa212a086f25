"""pytest integration: hypothesis files as test items (filled in with verify)."""
