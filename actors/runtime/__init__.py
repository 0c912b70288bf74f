"""The Ray side: provider, router and supervisor actors, and deploying them."""
