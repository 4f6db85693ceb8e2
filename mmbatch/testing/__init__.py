"""Builders of tiny random-weight models and synthetic data, for tests and the offline quickstart."""
