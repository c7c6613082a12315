"""Tests of the built-in plugins (plugins/, installed as covet_pipe.builtin)."""
