"""Tests of mmbatch.pipelines.metrics."""
