"""Livepatch transition analysis, offline."""
