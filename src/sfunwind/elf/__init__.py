"""ELF: sections, segments, symbols, notes, build IDs."""
