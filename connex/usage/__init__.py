"""Usage metering: per key and per minute, requests by status class and a latency histogram.

Each process counts its responses in memory (meter), sends the counts to Redis about
once a second in one transaction, and one process at a time rolls the counters in
Redis into the database (store). In embedded mode the counts go straight to the
database. The report module reads the tables for the ``usage`` query.
"""
