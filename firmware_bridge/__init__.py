"""edgevla.firmware_bridge: the host side of the Cortex-M7 link (mcu/PROTOCOL.md).

link       frame codec (COBS + CRC-32, messages, stream decoder), the connection (pyserial:
           UART, pty, /dev/ttyRPMSG*), clock sync, shared test vectors, `edgevla bench link`
servos     Feetech STS servo codec and FeetechBusSim (the servos behind the host build)
firmware   `make -C mcu` builds and the HostFirmware / QemuFirmware launchers
cli        `edgevla mcu ...`
"""
