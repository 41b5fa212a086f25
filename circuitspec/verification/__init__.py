"""Verification: run settings, the run context, every edge and every claim judged, validate."""
