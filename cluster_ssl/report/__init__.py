"""What a clustering run shows a person: assignments, cluster grids, a 2-D map, one page."""
