"""Model card: a Markdown summary of a blessed model, its data and its evaluation."""
