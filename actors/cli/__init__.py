"""The `aicmo-gateway` command."""
