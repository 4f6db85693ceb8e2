"""The shipped job files (``*.yaml``), installed as package data so that ``mmbatch run NAME``
and ``mmbatch quickstart`` find them from any directory."""
