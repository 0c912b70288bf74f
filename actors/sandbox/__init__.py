"""Local stand-ins for the real providers, used by the tests and the demo.

Each stand-in speaks one provider's documented contract on loopback (paths,
auth headers, status codes, rate-limit headers and bodies) and has knobs to
inject failures, latency and 429s at run time.
"""
