"""The host side of the M7 link: the frame codec (mcu/PROTOCOL.md), the connection over serial / pty / RPMsg, clock sync, shared test vectors, and the link benchmark."""
