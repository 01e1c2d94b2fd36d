"""Plain helpers every layer uses: errors, atomic writes, wording, constants, events, device and autocast, heat style, CSV cells, resource paths."""
