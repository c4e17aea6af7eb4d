"""Worlds: the settings an env runs in. Importing this package registers the built-in ones."""

from .base import World, build_world, check_world_args, register_world, world_names, world_parameters
from . import shapes  # noqa: F401  (registers "shapes" and "shapes_oracle")
from . import visdial  # noqa: F401  (registers "visdial" and "visdial_replay")
from . import visdial_train  # noqa: F401  (registers "visdial_train" and "visdial_train_replay")

__all__ = ["World", "build_world", "check_world_args", "register_world", "world_names", "world_parameters"]
