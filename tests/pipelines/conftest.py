"""Fixtures of the pipeline tests."""

import pytest


@pytest.fixture
def ray_plans():
    """The execution plans Ray Data logs for the datasets run while the fixture is active."""
    import logging

    from ray.data import DataContext

    plans: list[str] = []
    handler = logging.Handler()
    handler.emit = lambda record: plans.append(record.getMessage())  # type: ignore[method-assign]
    log = logging.getLogger("ray.data._internal.execution.streaming_executor")
    ctx = DataContext.get_current()
    level, announce = log.level, ctx.print_on_execution_start
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    ctx.print_on_execution_start = True
    yield plans
    log.removeHandler(handler)
    log.setLevel(level)
    ctx.print_on_execution_start = announce
