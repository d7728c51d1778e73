"""Nightly backups of a gateway's data directory and config: one verified file per night, N generations, restore.

config.py is the `[backup]` section, archive.py makes, verifies and restores a backup file (manifest.py
is its MANIFEST.json and the names a backup may hold, checked without touching a disk), schedule.py
draws the night's time inside the window and runs it (the systemd timer and the supervisor program
both call `edgegw backup scheduler`), cli.py is `edgegw backup now|list|verify|restore|scheduler`.
"""
