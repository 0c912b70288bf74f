"""email_verification: ZeroBounce, NeverBounce."""
