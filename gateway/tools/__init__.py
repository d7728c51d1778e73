"""Technician tools of the `edgegw` command: probe a bus for devices, read a device once by its profile."""
