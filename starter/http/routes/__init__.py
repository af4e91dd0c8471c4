"""One module per resource, each with its `router`; starter.http.app mounts them."""
