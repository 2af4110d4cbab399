"""Building the M7 firmware and launching its host build or QEMU image as a process."""
