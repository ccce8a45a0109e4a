"""What every emulator shares: latency and fault injection, state on disk, serving."""
