"""The client of the Cube AI proxy: wire requests, HTTP transport, errors."""
