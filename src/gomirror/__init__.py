"""gomirror: a verifying, caching, multi-upstream Go module proxy."""

__version__ = "0.1.0"
