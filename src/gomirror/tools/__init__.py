"""tools holds the logic behind gomirror's user tools (``setup``, ``doctor``), without any CLI.

``goenv`` reads and writes the go command's settings, ``hosts`` tells public
from private-looking module hosts, ``findings`` is the shared finding/verdict
model, ``diagnose`` checks settings, ``probe`` times proxies and checksum
database routes, ``project`` reads go.mod/go.sum, ``modcheck`` compares hashes
across go.sum, mirrors and the checksum database, and ``templates`` renders
the files ``setup`` generates.
"""
