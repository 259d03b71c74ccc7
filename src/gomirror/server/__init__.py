"""gomirror.server package."""
