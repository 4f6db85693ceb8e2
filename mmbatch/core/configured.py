"""A class whose config model is its type argument: ``class Embed(ModelOperator[EmbedConfig])``.

``self.config`` then has its real type for a type checker, and ``Embed.Config`` (the schema
of a job file's step) is filled from the argument, so the two can never disagree."""

from __future__ import annotations

from typing import Any, ClassVar, Generic, TypeVar, get_args

from pydantic import BaseModel

ConfigT = TypeVar("ConfigT", bound=BaseModel)


class Configured(Generic[ConfigT]):
    Config: ClassVar[type[BaseModel]]
    """The pydantic model of this class's config: the type argument of its base."""

    config: ConfigT

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for base in getattr(cls, "__orig_bases__", ()):
            for arg in get_args(base):
                if isinstance(arg, type) and issubclass(arg, BaseModel):
                    cls.Config = arg
                    return
