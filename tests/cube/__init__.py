"""Tests of cube_lsp.cube: the proxy client, its transport and its errors."""
