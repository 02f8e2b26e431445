"""Domain logic and API clients. Nothing here imports flask.request."""
