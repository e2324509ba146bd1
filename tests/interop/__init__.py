"""strongSwan interop harness for ravelin-iked (see README.md)."""
