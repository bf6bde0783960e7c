"""Examples that ship beside wxkf (not part of the installed distribution)."""
