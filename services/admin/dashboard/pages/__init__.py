"""The dashboard's pages, one module per group; each adds its routes with `add_routes(routes, dashboard)`."""
