"""Training objectives, one module per method over the contract in ``base.py``.

Which recipe uses which method is declared by the recipe (``Recipe.method``); this package
keeps no list of its own.
"""
