"""Storage backends: each owns bytes and keys; the Store owns the logic above them."""
