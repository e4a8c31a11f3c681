"""`erasure serve`: the HTTP API (/api, bearer tokens) and the dashboard (server-rendered, session cookie)."""
