"""Evaluation: retrieval (ranx), plausibility and faithfulness of rationales, comparisons and plots."""
