"""Tools around the engine: benchmark, and the run-file tools (reader, viewer,
headless renderer, report), which read run files through engine.runformat only."""
