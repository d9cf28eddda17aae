"""The user's commands: cli, install, doctor, logview, inspector. Nothing imports it."""
