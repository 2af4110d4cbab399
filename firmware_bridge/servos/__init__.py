"""Servo buses behind the firmware: the Feetech STS codec and its simulation."""
