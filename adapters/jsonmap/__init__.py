"""JSON → Reading mapping shared by the adapters that read JSON (mqtt, http_poll): paths, values, times, templates."""
