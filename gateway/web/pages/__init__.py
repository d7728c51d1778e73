"""The web UI's pages: one module per page, each with `routes`, listed in `gateway.web.app.PAGES`."""
