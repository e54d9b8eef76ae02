"""The gateway's forwarding exporter: the persistent queue, merged upstream requests, retries."""
