"""Development tools, not the service: the embedded stack (`tidings dev`), the Temporal dev
server, the SMTP sink, the webhook receiver and the provider emulators. Their extra packages are
the `dev-stack` extra, which the production image does not install."""
