"""email_sending: SMTP (`smtp.py`, with its session and error table in `smtp_session.py` and
`smtp_errors.py`; the `gmail` preset is `smtp.GmailSmtpAdapter`), SendGrid, Mailgun, and the MIME
message they share (`email_message.py`)."""
