"""``WorldSection``: the config fields that name a registered world and its keyword arguments."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, ValidationInfo, field_validator

from ..config import Schema, check_name
from .base import check_world_args, world_names


class WorldSection(Schema):
    """A config section that builds a world: the name must be registered, every argument one it takes.

    Subclasses redeclare ``world`` and ``world_kwargs`` for their own defaults and descriptions; the
    checks apply all the same. ``reserved_world_args`` names arguments the trainer sets itself (refused in
    ``world_kwargs``).
    """

    reserved_world_args: ClassVar[tuple[str, ...]] = ()

    world: str = Field("shapes_oracle", description="a registered world (`chatir worlds`)")
    world_kwargs: dict[str, Any] = Field(default_factory=dict, description="the world's keyword arguments (`chatir worlds`)")

    @field_validator("world")
    @classmethod
    def _world_exists(cls, world: str) -> str:
        return check_name("world", world, world_names())

    @field_validator("world_kwargs", mode="before")
    @classmethod
    def _none_is_empty(cls, kwargs: Any) -> Any:
        return {} if kwargs is None else kwargs

    @field_validator("world_kwargs")
    @classmethod
    def _world_args_exist(cls, kwargs: dict, info: ValidationInfo) -> dict:
        if "world" in info.data:  # else the world itself was refused
            check_world_args(info.data["world"], kwargs, reserved=cls.reserved_world_args)
        return kwargs
