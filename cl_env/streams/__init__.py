"""Stream builders, one module per family; the registry table in :mod:`cl_env.registration` names them."""
