"""Reading and checking the server's settings: noukai.toml, `NOUKAI_*` variables, options.

`load_server_config` is what every command calls; the table of settings is in `table.py`.
"""

from noukai_server.settings.loader import LoadedSettings, load_server_config, load_settings

__all__ = ["LoadedSettings", "load_server_config", "load_settings"]
