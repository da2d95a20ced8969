"""Scenario files shipped with oncolattice (run them by name: `oncolattice run quickstart`)."""
