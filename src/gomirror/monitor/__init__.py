"""gomirror.monitor package."""
