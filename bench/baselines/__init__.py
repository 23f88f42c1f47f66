"""The alternatives solo-os is measured against (apps only; ``bench/alternatives.py`` runs them)."""
