"""Operating a fleet of boxes: the Device entity, /metrics, alarms, signed remote configuration, safe mode, commissioning."""
