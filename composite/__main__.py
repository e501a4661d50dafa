"""``python -m composite`` runs the CLI."""

from .cli import main

raise SystemExit(main())
