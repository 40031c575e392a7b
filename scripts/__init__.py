"""Tools run beside the playground: the scale-out launcher (scaleout.py) and a minimal websocket client (wsclient.py)."""
