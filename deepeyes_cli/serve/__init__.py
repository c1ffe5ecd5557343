"""`deepeyes serve`: the whole agent loop behind an OpenAI-compatible API."""
