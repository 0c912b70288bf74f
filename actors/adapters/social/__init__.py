"""social_posting: LinkedIn, X, Ayrshare, and the network routing rule they share (`networks.py`)."""
