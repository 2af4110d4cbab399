"""edgevla.firmware_bridge: the host side of the Cortex-M7 link (mcu/PROTOCOL.md).

protocol      COBS + CRC-32 frame codec, messages, stream decoder (shared vectors in vectors/)
link          McuLink: pyserial transport (UART, pty, /dev/ttyRPMSG*), clock sync, reconnect
clock_sync    offset/drift estimation from PING/PONG
feetech       Feetech STS servo codec and FeetechBusSim (the servos behind the host build)
mcu_sim       HostFirmware / QemuFirmware launchers (`edgevla mcu sim [--qemu]`)
build         make -C mcu, one build at a time
cli           `edgevla mcu ...`;  bench_link: `edgevla bench link`
"""
