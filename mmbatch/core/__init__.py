"""The layer below operators, metrics and the engine: registries, dependency checks, model
loading, resources and Arrow column conversion. Nothing here imports Ray, an operator or a
metric."""
