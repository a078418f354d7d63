"""One module per CLI command; each defines ``register(app)`` and stays light to import."""
