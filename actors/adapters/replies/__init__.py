"""reply_fetching: IMAP (`imap.py`, with its session and protocol in `imap_session.py` and
`imap_protocol.py`), the Gmail API, and the parsing of a fetched message they share
(`_mail_parsing.py`)."""
