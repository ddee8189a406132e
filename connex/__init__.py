"""ConneX: a public API platform built on one GraphQL schema."""

__version__ = "0.1.0"
