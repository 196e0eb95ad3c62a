"""One module per paper; ``RECIPES`` maps recipe names to their :class:`Recipe`."""

from cluster_ssl.recipe import Recipe
from cluster_ssl.registry import Registry
from recipes import dcec, dec, idec

RECIPES: Registry[Recipe] = Registry("recipe")
for _module in (dec, idec, dcec):
    RECIPES.register(_module.RECIPE.name)(_module.RECIPE)
