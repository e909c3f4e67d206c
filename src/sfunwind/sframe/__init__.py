"""SFrame format: decode, encode, dump, validate, lookup."""
