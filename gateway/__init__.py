"""Proofless: a cross-department data-sharing gateway for certificate-free government services."""

__version__ = "0.1.0"
