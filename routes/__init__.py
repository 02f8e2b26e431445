"""Flask blueprints: thin layers that parse, validate, call models/ and render JSON or a template."""
