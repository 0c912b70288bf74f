"""crm_sync: Airtable, HubSpot."""
