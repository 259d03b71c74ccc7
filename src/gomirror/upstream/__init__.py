"""gomirror.upstream package."""
