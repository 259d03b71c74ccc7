"""sumdb is gomirror's checksum-database support.

note, tlog and tiles are the formats; routes, transport and tileauth fetch and
authenticate content route by route; client verifies lookups (and holds the
persisted tree head); verifier checks downloads; proxy and guard serve the
``/sumdb/`` pass-through. Nothing here imports the server, the app or the CLI.
"""
