"""mmbatch: declarative multimodal batch jobs on Ray Data."""

__version__ = "0.1.0"
