"""Process-wide helpers that import nothing of cluster-ssl: errors, registries, devices,
distribution, atomic files, module and RNG state, step timing."""
