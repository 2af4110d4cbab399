"""edgevla.firmware_bridge."""
