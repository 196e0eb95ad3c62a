"""One module per paper; ``RECIPES`` holds the ``RECIPE`` every module of this package
declares, found by listing the package (a new recipe file is all it takes)."""

import importlib
import pkgutil

from cluster_ssl.engine.recipe import Recipe
from cluster_ssl.runtime.registry import Registry

RECIPES: Registry[Recipe] = Registry("recipe")
for _info in pkgutil.iter_modules(__path__):
    _recipe = getattr(importlib.import_module(f"{__name__}.{_info.name}"), "RECIPE", None)
    if _recipe is not None:
        RECIPES.register(_recipe.name)(_recipe)
