"""The console commands (thin front ends over the core)."""
