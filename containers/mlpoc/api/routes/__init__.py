"""The API's routers, one module per resource; every router but the pages needs the key."""
