"""The IT admin's commands: init, check and status."""
