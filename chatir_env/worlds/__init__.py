"""Worlds: the settings an env runs in. Importing this package registers the built-in ones."""

# Importing a world module registers its worlds: shapes, shapes_oracle; visdial, visdial_replay; visdial_train,
# visdial_train_replay.
from . import shapes, visdial, visdial_train  # noqa: F401
from .base import World, build_world, check_world_args, register_world, world_names, world_parameters

__all__ = ["World", "build_world", "check_world_args", "register_world", "world_names", "world_parameters"]
