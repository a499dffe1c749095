"""Static figures (matplotlib, Agg backend): presentation only, nothing is computed here."""
