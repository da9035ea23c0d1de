"""Web-framework adapters that open a Noukai session per request: `noukai.adapters.fastapi`
(extra `[fastapi]`) and `noukai.adapters.flask` (extra `[flask]`)."""
