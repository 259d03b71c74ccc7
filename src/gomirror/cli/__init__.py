"""gomirror.cli package."""
