"""sumdb is gomirror's checksum-database support: notes, tlog and tiles, client, proxy, verifier."""
