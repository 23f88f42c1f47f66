"""The app's tests: `pytest` (they need no database server and no network)."""
