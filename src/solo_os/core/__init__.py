"""Pure decisions and records: no I/O, no database, no web stack (an import-linter contract)."""
