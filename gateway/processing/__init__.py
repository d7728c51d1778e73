"""The processing stage: small pure processors between the adapters and the buffer, chosen per reading by a match."""
