"""Edge-vs-cloud shadow disagreement and late ground truth (docs/shadow.md)."""
