"""coordination: locks, single-flight and small shared state across processes and instances."""
