"""Dramatiq brokers and actors: webhook delivery and its periodic sweep."""
