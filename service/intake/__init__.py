"""Intake: e-mail and Forms responses become logged, alerted concerns."""
