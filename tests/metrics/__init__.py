"""Tests of mmbatch.metrics."""
