"""webhook_dispatch: Standard Webhooks (`webhook.py`), Make, and the timestamp format they share
(`timestamps.py`)."""
