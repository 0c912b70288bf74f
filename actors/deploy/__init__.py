"""What `aicmo-gateway up` and `down` do: creating, updating and removing the
gateway's actors on a Ray cluster (`gateway.py`), and starting a private
local Ray sized for a gateway, for the demo and the benchmarks
(`local_ray.py`)."""
