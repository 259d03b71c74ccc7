"""gomirror.storage package."""
