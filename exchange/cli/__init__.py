"""The `exchange` command: click commands that load, call the library and report; no logic of
their own. May import anything in the package.
"""
