"""Local emulators of the push, SMS and Slack providers, speaking their wire protocols on
loopback and injecting faults on request (see `starter.dev.emulators.base`)."""
