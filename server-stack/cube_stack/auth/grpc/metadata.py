"""gRPC metadata keys our ``auth.v1`` server and clients share (no server code: clients import it alone)."""

ERROR_CODE_KEY = "cube-error-code"  # trailing-metadata key carrying the stable ``auth.*`` code
SESSION_ID_KEY = "cube-session-id"  # request-metadata key: the access token's `sid` (see server.py)
