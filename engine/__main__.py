"""`python -m engine` is the `oncolattice` command."""
from engine.cli import main

raise SystemExit(main())
