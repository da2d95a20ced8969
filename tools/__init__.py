"""Tools around the engine: benchmark (and, later, viewer, renderer, reports)."""
