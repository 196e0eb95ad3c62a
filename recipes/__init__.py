"""One module per paper; ``RECIPES`` maps recipe names to their :class:`Recipe`."""

from cluster_ssl.recipe import Recipe
from cluster_ssl.registry import Registry
from recipes import cc, dcec, dec, deepcluster, idec, idfd, pcl, scan, simclr, simclr_dec

RECIPES: Registry[Recipe] = Registry("recipe")
for _module in (dec, idec, dcec, simclr, cc, idfd, scan, deepcluster, pcl, simclr_dec):
    RECIPES.register(_module.RECIPE.name)(_module.RECIPE)
