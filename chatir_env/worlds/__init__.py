"""Worlds: the settings an env runs in. Importing this package registers the built-in ones."""

from .base import World, build_world, register_world
from . import shapes  # noqa: F401  (registers "shapes" and "shapes_oracle")
from . import visdial  # noqa: F401  (registers "visdial" and "visdial_replay")
from . import visdial_train  # noqa: F401  (registers "visdial_train" and "visdial_train_replay")

__all__ = ["World", "build_world", "register_world"]
