"""Signatures and keys: compact JWS (EdDSA), signed proofs, consent tokens, key files."""
