"""The wire: message types and their msgpack codec, shared-memory frames, the ZeroMQ bus, endpoint naming and the time base every timestamp uses."""
