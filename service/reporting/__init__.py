"""The board / inspectors report."""
