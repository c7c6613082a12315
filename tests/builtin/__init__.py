"""Tests of the built-in plugins (covet_pipe.builtin)."""
