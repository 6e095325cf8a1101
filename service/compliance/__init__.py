"""Compliance: the action plan, policies and training, and their reminders."""
