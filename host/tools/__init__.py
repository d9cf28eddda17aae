"""The user's commands: cli, install, doctor, logview, inspect. Nothing imports it."""
