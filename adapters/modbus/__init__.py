"""Modbus devices driven by firmware profiles: sans-I/O value codec and read planner, RTU framing.

`adapters.modbus.codec` turns registers and bits into typed, scaled values (and back) and plans
coalesced reads; `adapters.modbus.rtu` frames requests and answers for RS-485 (CRC-16, exception
responses with technician hints, t3.5). Neither touches I/O: the transport and the adapter sit on top.
"""
