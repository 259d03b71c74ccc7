"""module holds gomirror's pure Go-module protocol primitives, with no network I/O.

paths (module/file path checks, case-encoding, GOPRIVATE patterns), semver,
pseudo (pseudo-versions), dirhash (``h1:`` hashes), modzip (module zip checks
and creation, over zipread's untrusted-zip reader and foldcase's collision
keys), gomod (go.mod parsing) and info (``.info`` JSON and ``@v/list``). Each
follows golang.org/x/mod and cmd/go exactly, including their error messages.
"""
