"""Benchmarks of ConneX against local PostgreSQL and Redis; `make bench` runs them."""
