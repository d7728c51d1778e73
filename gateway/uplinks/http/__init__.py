"""The shared HTTP batch engine of the NGSI uplinks: batch.py (batching, outcomes, retries), client.py (one
aiohttp session, TLS, errors translated), oauth2.py (client-credentials tokens). orion/ and ngsi_ld/ build on it."""
