"""Format readers and writers; each module documents its layout and what it does not support."""
