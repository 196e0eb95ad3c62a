"""One estimator per recipe that declares one (``Recipe.estimator``), made from the recipe.

Each is a :class:`~cluster_ssl.estimators.base.DeepClusteringEstimator` over its recipe
with the recipe's ``digits`` CPU preset as defaults, taking images (N, C, H, W) or feature
vectors (N, D) as the recipe's ``input_kind`` says.
"""

from __future__ import annotations

from cluster_ssl.engine.recipe import Recipe
from cluster_ssl.estimators.base import DeepClusteringEstimator
from recipes import RECIPES

INPUTS = {"images": "images (N, C, H, W)", "vectors": "(n_samples, n_features) vectors"}


def estimator_class(recipe: Recipe) -> type[DeepClusteringEstimator]:
    """The scikit-learn estimator of ``recipe``, named ``recipe.estimator``."""
    name = str(recipe.estimator)
    centres = "k-means centres in the embedding" if recipe.clusters_by_kmeans else "none"
    doc = (
        f"{recipe.description}, on {INPUTS[recipe.input_kind]}. Recipe ``{recipe.name}`` "
        f"(recipes/{recipe.name}.py); ``cluster_centers_``: "
        f"{'the clustering layer' if recipe.method.clusters_by == 'parameters' else centres}."
    )
    attributes = {
        "recipe": recipe.name,
        "input_kind": recipe.input_kind,
        "__doc__": doc,
        "__module__": __name__,
        "__qualname__": name,
    }
    return type(name, (DeepClusteringEstimator,), attributes)


ESTIMATORS: tuple[type[DeepClusteringEstimator], ...] = tuple(
    estimator_class(recipe) for recipe in RECIPES.values() if recipe.estimator
)
globals().update({cls.__name__: cls for cls in ESTIMATORS})  # importable, picklable
