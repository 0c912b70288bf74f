"""Pure policy: health transitions, ranking, recommendations. No Ray, no I/O, no clock."""
