"""Peers trained on our stores for side-by-side comparisons (needs the `bench` extra)."""
