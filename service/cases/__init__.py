"""The case record: the concern register, escalation and what happens after intake."""
