"""Index-free sparse training on the tile: the resident tile, VAU delta rules, prune/regrow schedules."""
