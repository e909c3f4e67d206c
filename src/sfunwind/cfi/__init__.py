"""DWARF CFI: .eh_frame/.debug_frame parsing, CFA program evaluation into rows."""
