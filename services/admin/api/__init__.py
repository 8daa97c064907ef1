"""The admin API's routes, one module per resource; each adds its routes with `add_routes(routes, ctx)`."""
