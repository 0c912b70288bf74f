"""lead_enrichment: Apollo, Dropcontact (which also verifies addresses)."""
